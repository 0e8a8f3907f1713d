-- wrk: a mixed load on one session, from the chat URL given: GET one chat, a list page, a changes page,
-- and a PATCH, in a 5:2:2:1 mix.
local chat = wrk.path
local list = chat:match("^(.*/chats)/")
local changes = chat:match("^(.*)/chats/") .. "/changes"
local n = 0
request = function()
  n = n + 1
  local slot = n % 10
  local auth = {["Authorization"] = wrk.headers["Authorization"]}
  if slot < 5 then
    return wrk.format("GET", chat, auth)
  elseif slot < 7 then
    return wrk.format("GET", list, auth)
  elseif slot < 9 then
    return wrk.format("GET", changes, auth)
  end
  return wrk.format("PATCH", chat, auth, (n % 20 < 10) and '{"archived": true}' or '{"archived": false}')
end
