"""Drives a Nexus panel with py-dactyl, a third-party Pterodactyl API client library, unchanged:
provision (user, server placed by location and port range), start, command (over the
Pterodactyl console socket), files, suspend, then delete. Exits non-zero on any deviation.

Usage: flow.py PANEL_URL APPLICATION_KEY CLIENT_KEY PORT_RANGE
"""
import sys
import time

from pydactyl import PterodactylClient
from requests.exceptions import HTTPError

url, application_key, client_key, port_range = sys.argv[1:5]
app = PterodactylClient(url, application_key)
client = PterodactylClient(url, client_key)
DEADLINE = 60


def wait(what, check):
    end = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > end:
            raise SystemExit(f"{what}: not in time")
        time.sleep(0.25)


def rows(paginated):
    """Every row of a list, following its pages as the library does."""
    return [row for page in paginated for row in page.data]


def attributes(response):
    return response["attributes"]


# Provision: a customer, a location for the node, the egg, the server.
user = attributes(app.user.create_user(
    username="pydactyl", email="pydactyl@example.com", first_name="Py", last_name="Dactyl",
    password="a long enough password", external_id="py-customer"))
found = app.user.get_user_info(external_id="py-customer", detail=False)
assert found["id"] == user["id"], found
listed = app.user.list_users(email="pydactyl@example.com")
assert [u["attributes"]["email"] for u in listed.data] == ["pydactyl@example.com"], listed.data
assert len(listed) == 1

location = attributes(app.locations.create_location(shortcode="py1", description="pydactyl test"))
node = next(n for n in rows(app.nodes.list_nodes()) if n["attributes"]["name"] == "local")["attributes"]
app.nodes.edit_node(node["id"], location_id=location["id"], use_ssl=False)
nest = next(n for n in rows(app.nests.list_nests()) if n["attributes"]["name"] == "Pydactyl")["attributes"]
egg = app.nests.get_eggs_in_nest(nest["id"])["data"][0]["attributes"]

created = app.servers.create_server(
    name="py-echo", user_id=user["id"], nest_id=nest["id"], egg_id=egg["id"],
    memory_limit=128, swap_limit=0, disk_limit=512, location_ids=[location["id"]],
    port_range=[port_range], environment={"GREETING": "hello pydactyl"},
    external_id="py-server")
assert created.status_code == 201, created.text
server = attributes(created.json())
server_id, identifier = server["id"], server["identifier"]
assert app.servers.get_server_info(external_id="py-server")["id"] == server_id
wait("install", lambda: app.servers.get_server_info(server_id=server_id)["container"]["installed"] == 1)
assert app.servers.get_server_info(server_id=server_id)["container"]["installed"] == 1

# As the customer's panel would: find it, start it, talk to it.
mine = client.client.servers.list_servers(params={"type": "admin"})
assert identifier in [s["attributes"]["identifier"] for s in mine.data], mine.data
socket = client.client.servers.get_websocket_client(identifier)
socket.connect()
# py-dactyl asks for start_on_completion by default: the server starts once installed.
wait("running", lambda: client.client.servers.get_server_utilization(identifier)["current_state"] == "running")
client.client.servers.send_console_command(identifier, "ping pydactyl")
socket.send_command("ping socket")
seen = set()
for message in socket.listen(events=("console output",)):
    line = message["args"][0]
    if "echo: ping pydactyl" in line:
        seen.add("http")
    if "echo: ping socket" in line:
        seen.add("socket")
    if seen == {"http", "socket"}:
        break
socket.close()

files = client.client.servers.files
files.write_file(identifier, "/pydactyl.txt", "written by py-dactyl")
assert "pydactyl.txt" in [f["attributes"]["name"] for f in files.list_files(identifier, "/")["data"]]
assert files.get_file_contents(identifier, "/pydactyl.txt", json=False).text == "written by py-dactyl"

client.client.servers.send_power_action(identifier, "kill")
wait("stopped", lambda: client.client.servers.get_server_utilization(identifier)["current_state"] == "offline")
app.servers.suspend_server(server_id)
assert app.servers.get_server_info(server_id=server_id)["suspended"] is True
app.servers.unsuspend_server(server_id)

# Delete: the server goes, then its owner.
app.servers.delete_server(server_id)


def gone():
    try:
        app.servers.get_server_info(server_id=server_id)
        return False
    except HTTPError as error:
        return error.response.status_code == 404


wait("deletion", gone)
app.user.delete_user(user_id=user["id"])
print("py-dactyl flow passed")
