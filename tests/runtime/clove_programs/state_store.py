"""The shared state store from a Clove SDK program: scopes, prefixes, TTL, delete."""

import json

from clove_sdk import CloveClient

client = CloveClient()
assert client.connect(), "no kernel"

out = {}
out["store"] = client.store("config:model", {"name": "tiny", "layers": 2})["success"]
client.store("config:seed", 7)
client.store("scratch", "mine", scope="agent")
client.store("gone", "soon", ttl=0)
out["fetch"] = client.fetch("config:model")["value"]
out["agent_scope"] = client.fetch("scratch")
out["ttl0_exists"] = client.fetch("gone")["exists"]
out["prefix_keys"] = sorted(client.list_keys("config:")["keys"])
out["deleted"] = client.delete_key("config:seed")["deleted"]
out["after_delete"] = client.fetch("config:seed")["exists"]
client.disconnect()
print(json.dumps(out))
