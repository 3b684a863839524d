"""The cloud's one image, uploaded to the real Glance at `up` under a fixed ID (config.IMAGE_ID)."""

from . import config, proc


def upload_image(conn):
    """Create the image and upload its data (zeros, raw); Glance stores it as a file."""
    image = {
        "id": config.IMAGE_ID,
        "name": config.IMAGE_NAME,
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "public",
        "min_disk": 0,
        "min_ram": 0,
    }
    response = conn.image.post("/images", json=image)
    if response.status_code >= 400:
        raise proc.CloudError(f"creating image {config.IMAGE_NAME}: {response.status_code} {response.text[:300]}")
    response = conn.image.put(f"/images/{config.IMAGE_ID}/file", data=bytes(config.IMAGE_SIZE), headers={"Content-Type": "application/octet-stream"})
    if response.status_code >= 400:
        raise proc.CloudError(f"uploading image {config.IMAGE_NAME}: {response.status_code} {response.text[:300]}")
    status = conn.image.get(f"/images/{config.IMAGE_ID}").json()["status"]
    if status != "active":
        raise proc.CloudError(f"image {config.IMAGE_NAME} is {status} after its upload, not active")
