"""Keystone contents: service project and users, the member project, the service catalog."""

from . import config


def register(secrets):
    import openstack

    conn = openstack.connect(
        auth_url=config.keystone_url(),
        username="admin",
        password=secrets["admin"],
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name=config.REGION,
        interface="internal",
        load_yaml_config=False,
        load_envvars=False,
    )
    ident = conn.identity
    roles = {r.name: r for r in ident.roles()}
    for name in ("service", "member", "reader"):
        if name not in roles:
            roles[name] = ident.create_role(name=name)
    service_project = ident.create_project(name="service", domain_id="default")
    demo_project = ident.create_project(name="demo", domain_id="default")
    admin_user = ident.find_user("admin", domain_id="default")
    # The admin may act inside the member project (boot servers owned by it).
    ident.assign_project_role_to_user(demo_project, admin_user, roles["admin"])
    for name in ("nova", "placement", "glance", "cinder"):
        user = ident.create_user(name=name, password=secrets[name], domain_id="default")
        for role in ("admin", "service"):
            ident.assign_project_role_to_user(service_project, user, roles[role])
    demo = ident.create_user(name="demo", password=secrets["demo"], domain_id="default", default_project_id=demo_project.id)
    ident.assign_project_role_to_user(demo_project, demo, roles["member"])
    ident.assign_project_role_to_user(demo_project, demo, roles["reader"])

    catalog = (("nova", "compute"), ("placement", "placement"), ("glance", "image"), ("cinder", "block-storage"), ("neutron", "network"))
    for name, kind in catalog:
        service = ident.create_service(name=name, type=kind)
        # public: through the fault proxy (the collection's way in); internal and admin: direct
        # (Nova's own services), see faultproxy.py.
        for interface in ("public", "internal", "admin"):
            ident.create_endpoint(service_id=service.id, interface=interface, url=config.endpoint(kind, public=interface == "public"), region_id=config.REGION)
