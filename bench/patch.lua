-- wrk: PATCH the chat in the URL, alternating the archived flag.
local n = 0
request = function()
  n = n + 1
  local body = (n % 2 == 0) and '{"archived": true}' or '{"archived": false}'
  return wrk.format("PATCH", nil, {["Authorization"] = wrk.headers["Authorization"]}, body)
end
