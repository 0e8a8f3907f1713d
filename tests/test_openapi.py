"""GET /openapi.json: an OpenAPI 3.1 document of every endpoint, generated from the schemas."""
from openapi_spec_validator import validate

OPERATIONS = {
    ("/api/v1/sessions/{sid}/chats/{cid}", "get"): {"200", "304", "401", "403", "404", "500", "503"},
    ("/api/v1/sessions/{sid}/chats/{cid}", "patch"): {"200", "401", "403", "404", "412", "413", "422", "500", "503"},
    ("/api/v1/sessions/{sid}/chats", "get"): {"200", "304", "401", "403", "404", "422", "500", "503"},
    ("/api/v1/sessions/{sid}/sync", "post"): {"200", "401", "403", "404", "413", "422", "500", "503"},
    ("/api/v1/sessions/{sid}/changes", "get"): {"200", "304", "401", "403", "404", "410", "422", "500", "503"},
    ("/api/v1/api-keys", "post"): {"201", "401", "403", "413", "422", "500", "503"},
    ("/api/v1/api-keys", "get"): {"200", "304", "401", "403", "422", "500", "503"},
    ("/api/v1/api-keys/{id}", "delete"): {"204", "401", "403", "404", "500", "503"},
    ("/api/v1/webhooks", "post"): {"201", "401", "403", "413", "422", "500", "503"},
    ("/api/v1/webhooks", "get"): {"200", "304", "401", "403", "422", "500", "503"},
    ("/api/v1/webhooks/{id}", "get"): {"200", "304", "401", "403", "404", "500", "503"},
    ("/api/v1/webhooks/{id}", "patch"): {"200", "401", "403", "404", "413", "422", "500", "503"},
    ("/api/v1/webhooks/{id}", "delete"): {"204", "401", "403", "404", "500", "503"},
    ("/api/v1/webhooks/{id}/rotate-secret", "post"): {"200", "401", "403", "404", "500", "503"},
    ("/api/v1/webhooks/{id}/deliveries", "get"): {"200", "304", "401", "403", "404", "422", "500", "503"},
    ("/api/v1/webhooks/{id}/replay", "post"): {"202", "401", "403", "404", "413", "422", "500", "503"},
    ("/docs", "get"): {"200"},
    ("/metrics", "get"): {"200", "401", "404"},
    ("/healthz", "get"): {"200"},
    ("/readyz", "get"): {"200", "503"},
    ("/openapi.json", "get"): {"200"},
}


def test_document_is_valid_openapi_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.content_type == "application/json"
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_operation_and_status_is_documented(client):
    document = client.get("/openapi.json").get_json()
    found = {(path, method): set(operation["responses"])
             for path, item in document["paths"].items()
             for method, operation in item.items() if method != "parameters"}
    assert found == OPERATIONS


def test_every_operation_is_tagged_for_a_generated_client(client):
    document = client.get("/openapi.json").get_json()
    tags = {(path, method): operation["tags"] for path, item in document["paths"].items()
            for method, operation in item.items() if method != "parameters"}
    assert {tag for names in tags.values() for tag in names} == {"chats", "sync", "admin", "operations"}
    assert all(len(names) == 1 for names in tags.values())
    assert tags[("/api/v1/api-keys/{id}", "delete")] == ["admin"] and tags[("/healthz", "get")] == ["operations"]
    assert [tag["name"] for tag in document["tags"]] == ["chats", "sync", "admin", "operations"]


def test_schemas_come_from_the_marshmallow_classes(client):
    components = client.get("/openapi.json").get_json()["components"]
    assert set(components["schemas"]["Chat"]["required"]) == {
        "id", "jid", "sessionId", "type", "name", "lastMessageAt", "unreadCount", "archived", "pinned",
        "mutedUntil"}
    assert components["schemas"]["Chat"]["properties"]["mutedUntil"]["type"] == ["integer", "null"]
    assert components["schemas"]["ChatPatch"]["additionalProperties"] is False
    assert set(components["schemas"]["ChatPatch"]["properties"]) == {"archived", "pinned", "mutedUntil", "unmute"}
    assert components["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A login JWT from the identity provider, or an API key (csk_…) from create-api-key."}


def test_list_parameters_come_from_the_query_schema(client):
    document = client.get("/openapi.json").get_json()
    parameters = {parameter["name"]: parameter
                  for parameter in document["paths"]["/api/v1/sessions/{sid}/chats"]["get"]["parameters"]}
    assert set(parameters) == {"limit", "cursor", "archived", "pinned", "type", "If-None-Match"}
    assert parameters["type"]["schema"]["enum"] == ["dm", "group", "broadcast", "newsletter"]
    assert parameters["archived"]["schema"]["type"] == "boolean"
