# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The option names are those of the openstack.cloud collection on purpose: an operator's
# clouds.yaml, OS_* environment and module_defaults for openstack.cloud work here unchanged.


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  cloud:
    description:
      - Named cloud or cloud configuration to operate against.
      - If a string, the name of a cloud in C(clouds.yaml) (openstacksdk looks in
        the file named by the E(OS_CLIENT_CONFIG_FILE) environment variable, then C(./clouds.yaml),
        C(~/.config/openstack/clouds.yaml) and C(/etc/openstack/clouds.yaml)).
        It provides the defaults for O(auth) and O(auth_type).
      - If a dictionary, a complete cloud configuration as found in one entry of C(clouds.yaml);
        then O(auth), O(auth_type), O(region_name), O(validate_certs), O(ca_cert), O(client_cert),
        O(client_key) and O(api_timeout) must not be given and O(interface) must keep its default.
      - Not needed when O(auth) is given or the standard E(OS_*) environment variables are set.
      - Passwords and secrets inside a dictionary are masked in the module's results.
    type: raw
  auth:
    description:
      - Authentication information as needed by the auth plugin O(auth_type). For the default
        C(password) plugin, C(auth_url), C(username), C(password), C(project_name) and the domain
        names (C(user_domain_name), C(project_domain_name)).
      - Not needed when a named O(cloud) is given or E(OS_*) environment variables are set.
      - The whole dictionary is treated as a secret and never shown in results.
    type: dict
  auth_type:
    description:
      - Name of the keystoneauth plugin, for example C(password), C(v3applicationcredential) or C(token).
      - Defaults to what the named O(cloud) says, else C(password).
    type: str
  region_name:
    description:
      - Name of the region.
    type: str
  interface:
    description:
      - Which endpoint of the service catalog to use.
    type: str
    choices: [admin, internal, public]
    default: public
    aliases: [endpoint_type]
  validate_certs:
    description:
      - Whether to verify the TLS certificates of the OpenStack APIs.
      - Defaults to what the named O(cloud) says, else V(true).
    type: bool
    aliases: [verify]
  ca_cert:
    description:
      - Path to a CA certificate bundle used to verify the OpenStack APIs.
    type: str
    aliases: [cacert]
  client_cert:
    description:
      - Path to a client certificate for mutual TLS with the OpenStack APIs.
    type: str
    aliases: [cert]
  client_key:
    description:
      - Path to the key of O(client_cert).
    type: str
    aliases: [key]
  api_timeout:
    description:
      - Seconds the HTTP layer waits for one OpenStack API response. If omitted, openstacksdk's default.
    type: int
  auth_retry_timeout:
    description:
      - Seconds the module keeps asking Keystone for a token when it starts while Keystone fails transiently (no
        answer, HTTP 500, 502, 503 or 504), with backoff, before it fails; a recovery launched during a short
        control-plane outage waits it out. V(0) asks once. A refusal (wrong password, no such project) fails at
        once.
    type: int
    default: 60
  sdk_log_path:
    description:
      - Path of a file where openstacksdk writes its log. No log is written when omitted.
    type: str
  sdk_log_level:
    description:
      - Level of the openstacksdk log written to O(sdk_log_path). V(DEBUG) includes HTTP requests and their
        bodies; passwords, tokens, every secret option value and secret JSON members such as C(adminPass) are
        written as C(********).
    type: str
    default: INFO
    choices: [INFO, DEBUG]
  auth_cache:
    description:
      - A file in which the modules of one run share their Keystone token (and service catalog), so that a
        module after the first neither authenticates again nor makes the APIs validate a new token.
      - The file is written with mode 0600, its directory created with mode 0700 when missing; a directory
        open to other users is refused with a warning. A token saved for other credentials is never used; an
        expired one, or one the API refuses, is replaced by a new authentication.
      - The first module that connects through openstacksdk also saves there the endpoint of each service it used,
        its TLS settings and timeout, and a digest of the configuration files (no password). A later module with
        the same connection options, E(OS_*) variables and unchanged files connects from that without loading
        openstacksdk's configuration (a shorter start); it loads it for a new token and for another service. Not
        with O(sdk_log_path).
      - It holds a bearer token until the token expires, so keep it in a private directory and end it at the end
        of the run (revoke the token and remove the file) with M(novaha.recovery.os_auth_cache), or with
        M(novaha.recovery.os_recovery_run) O(novaha.recovery.os_recovery_run#module:end_auth_cache=true) as the
        host_recovery role does (C(~/.ansible/tmp/novaha-recovery-RUN_ID.token)).
      - Without it every module authenticates on its own.
    type: path
requirements:
  - python >= 3.9
  - openstacksdk >= 1.0.0
notes:
  - Credentials are resolved by openstacksdk exactly as for the openstack.cloud collection, named clouds
    from C(clouds.yaml) (the file named by E(OS_CLIENT_CONFIG_FILE) first), then E(OS_*) environment
    variables, then the explicit options of the task.
  - All modules of this collection are in the action group C(novaha.recovery.openstack), so these options
    can be set once with C(module_defaults) and C(group/novaha.recovery.openstack).
  - Nova service operations need an account with the admin role (by default policy).
"""
