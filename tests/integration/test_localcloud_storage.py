"""The local cloud's storage is real Glance and Cinder: boot from volume, data volumes, their attachments
and their hosts, through the public APIs; an evacuation moves the attachments and the port binding."""

from localcloud import config, volumes  # tests/localcloud is on sys.path (conftest)
from test_localcloud import force_down, server, wait_settled


def port_of(conn, server_id):
    (port,) = conn.network.get(f"/ports?device_id={server_id}").json()["ports"]
    return port


def test_glance_serves_the_clouds_image_and_cinder_its_api_through_the_fault_proxy(cloud, faults):
    conn = cloud.connect()
    image = conn.image.get(f"/images/{config.IMAGE_ID}").json()
    assert (image["name"], image["status"], image["size"]) == (config.IMAGE_NAME, "active", config.IMAGE_SIZE)
    data = conn.image.get(f"/images/{config.IMAGE_ID}/file")
    assert len(data.content) == config.IMAGE_SIZE
    services = conn.block_storage.get("/os-services", microversion="3.0").json()["services"]
    assert {(s["binary"], s["state"]) for s in services} == {("cinder-scheduler", "up"), ("cinder-volume", "up")}
    seen = {entry["service"] for entry in faults.log()}
    assert {"glance", "cinder"} <= seen


def test_boot_from_volume_with_a_data_volume_shows_both_attached_on_the_servers_host(clean_cloud):
    conn = clean_cloud.connect()
    (booted,) = clean_cloud.boot("node-28", boot_from_volume=True, data_volume=True)
    body = server(conn, booted["id"])
    assert body["image"] == ""  # booted from a volume, not from the image
    (root,) = [v for v in booted["volumes"] if volumes.volume(conn, v)["bootable"] == "true"]
    (data,) = set(booted["volumes"]) - {root}
    assert volumes.volume(conn, root)["volume_image_metadata"]["image_id"] == config.IMAGE_ID
    for volume_id in (root, data):
        assert volumes.volume(conn, volume_id)["status"] == "in-use"
        attachments = volumes.attachments(conn, volume_id)
        assert [(a["status"], a["server_id"], a["host"]) for a in attachments] == [("attached", booted["id"], "node-28")]


def test_evacuation_moves_every_volume_attachment_and_the_port_binding_to_the_new_host(clean_cloud):
    conn = clean_cloud.connect()
    (booted,) = clean_cloud.boot("node-28", boot_from_volume=True, data_volume=True, port=True)
    assert port_of(conn, booted["id"])["binding:host_id"] == "node-28"
    before = {v: volumes.attachments(conn, v) for v in booted["volumes"]}
    clean_cloud.fail_host("node-28")
    force_down(conn, "node-28")

    response = conn.compute.post(f"/servers/{booted['id']}/action", json={"evacuate": {}}, microversion="2.95")
    assert response.status_code == 200, response.text
    moved = wait_settled(conn, booted["id"], "node-28")
    target = moved["OS-EXT-SRV-ATTR:host"]
    assert target in ("node-27", "node-31") and moved["status"] == "SHUTOFF"

    assert sorted(v["id"] for v in moved["os-extended-volumes:volumes_attached"]) == sorted(booted["volumes"])
    for volume_id, old in before.items():
        attachments = volumes.attachments(conn, volume_id)
        assert [(a["status"], a["server_id"], a["host"]) for a in attachments] == [("attached", booted["id"], target)], volume_id
        assert attachments[0]["id"] != old[0]["id"]  # a new attachment; the failed host's one is gone
    assert port_of(conn, booted["id"])["binding:host_id"] == target

    clean_cloud.cli("reset")  # a dead host and attached volumes: reset leaves neither server nor volume
    assert not list(conn.compute.servers(all_projects=True))
    assert not volumes.all_volumes(conn)
