-- JSON schema of discovery.kubernetes for APISIX. It accepts everything the library accepts (IPv6 and uppercase
-- hosts, integer ports) and sets the same defaults; the library re-validates the config at start with messages
-- naming field, value and rule, so this schema stays deliberately simple.
--
-- APISIX checks config.yaml twice. At start, in init_by_lua, with this file (found through `extra_lua_path`): it
-- fills in the defaults and refuses what it does not allow (see the end). Before that, its CLI (`apisix init`,
-- `start`, `reload`) checks with the discovery schema on the CLI's own package.path, which has no
-- `extra_lua_path`: APISIX's built-in schema, unless this file is installed over APISIX's tree. That schema is
-- stricter; the forms that pass both (README, "What APISIX's CLI checks"; e2e/apisix-cli/check-config.py runs
-- them through the CLI of APISIX 3.8 and 3.18):
--   service.port  a quoted string ("6443") or ${VAR}. An integer passes here but APISIX's CLI then fails while
--                 rendering nginx.conf (it takes the length of the port to find ${VAR} references).
--   service.host  a lower-case DNS name, IPv4 or ${VAR}; an IPv6 API server through ${VAR} (the address in the
--                 environment) or `kubeconfig` (the CLI does not open the file).
--   ${VAR}        in host, port and token: a name ending in a letter or `_`.
--   shared_size   1m to 99m on APISIX 3.8 (any size on 3.18); APISIX also sizes an unused
--                 `lua_shared_dict kubernetes` with it.
--   id            8 characters at most on APISIX 3.8.
--   several clusters: `service`, and `client` with `token` or `token_file`, in every cluster (no kubeconfig-only
--                 or certificate-only clusters).

local env_ref = [[^\$\{[_A-Za-z][_A-Za-z0-9]*\}$]]

local host = {
    type = "string",
    minLength = 1,
    -- A ${VAR} reference, a DNS name, an IPv4 address, or an IPv6 address (bare or bracketed).
    pattern = [[^(\$\{[_A-Za-z][_A-Za-z0-9]*\}|[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[?[0-9A-Fa-f:.]+\]?)$]],
}

local port = {
    anyOf = {
        { type = "string", pattern = env_ref },
        { type = "string", pattern = [[^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$]] },
        { type = "integer", minimum = 1, maximum = 65535 },
    },
}

local schema_field = { type = "string", enum = { "http", "https" }, default = "https" }

local token = {
    type = "string",
    anyOf = {
        { pattern = env_ref },
        { pattern = [[^[A-Za-z0-9+/._=-]{0,4096}$]] },
    },
}

local token_file = { type = "string", minLength = 1, maxLength = 500, pattern = [[^[^:*?"<>|]*$]] }

-- PEM files (CA bundle, client certificate and key) and the kubeconfig: a path or ${VAR}.
local file_path = { type = "string", minLength = 1, maxLength = 4096 }

local client_properties = {
    token = token,
    token_file = token_file,
    ca_file = file_path,
    cert_file = file_path,
    key_file = file_path,
}

local namespace_name = { type = "string", pattern = [[^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$]] }
local namespace_patterns = {
    type = "array",
    minItems = 1,
    items = { type = "string", pattern = [[^[\x21-\x7e]*$]] },
}

local namespace_selector = {
    type = "object",
    properties = {
        equal = namespace_name,
        not_equal = namespace_name,
        match = namespace_patterns,
        not_match = namespace_patterns,
    },
    additionalProperties = false,
    -- At most one way of selecting namespaces.
    maxProperties = 1,
}

local common = {
    namespace_selector = namespace_selector,
    label_selector = { type = "string" },
    default_weight = { type = "integer", minimum = 0, default = 50 },
    shared_size = { type = "string", pattern = [[^[1-9][0-9]*m$]], default = "64m" },
    watch_endpoint_slices = { type = "boolean", default = false },
    -- Seconds: a watch silent this long is presumed dead; one list's deadline; readiness off when the data has
    -- not been confirmed current for this long (off when absent).
    watch_idle_timeout = { type = "integer", minimum = 10, maximum = 86400 },
    list_timeout = { type = "integer", minimum = 10, maximum = 86400 },
    max_staleness = { type = "integer", minimum = 1, maximum = 86400 },
    -- A Kubernetes object (or watch event) larger than this is skipped and logged.
    max_object_size = { type = "string", pattern = [[^[1-9][0-9]*m$]] },
    -- How the initial sync and relists fetch everything: a streaming list falling back to paged LISTs.
    list_strategy = { type = "string", enum = { "auto", "watch_list", "list" }, default = "auto" },
    -- Server, CA and credentials from a kubeconfig file instead of service/client.
    kubeconfig = file_path,
    context = { type = "string", minLength = 1 },
    -- Zone-aware node priorities: the mode and the gateway's own zone (a label value or ${VAR}).
    topology = {
        type = "object",
        properties = {
            mode = { type = "string", enum = { "off", "prefer_zone", "hints" }, default = "off" },
            zone = { type = "string", maxLength = 63 },
        },
        additionalProperties = false,
    },
}

local function with_common(props)
    for k, v in pairs(common) do
        props[k] = v
    end
    return props
end

local single = {
    type = "object",
    properties = with_common({
        service = {
            type = "object",
            properties = {
                schema = schema_field,
                host = { default = "${KUBERNETES_SERVICE_HOST}", type = host.type, minLength = host.minLength,
                         pattern = host.pattern },
                port = { default = "${KUBERNETES_SERVICE_PORT}", anyOf = port.anyOf },
                ssl_verify = { type = "boolean" },
            },
            default = {
                schema = "https",
                host = "${KUBERNETES_SERVICE_HOST}",
                port = "${KUBERNETES_SERVICE_PORT}",
            },
        },
        client = {
            type = "object",
            properties = client_properties,
            default = { token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token" },
        },
    }),
    default = {
        service = {
            schema = "https",
            host = "${KUBERNETES_SERVICE_HOST}",
            port = "${KUBERNETES_SERVICE_PORT}",
        },
        client = { token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token" },
    },
}

local multi = {
    type = "array",
    minItems = 1,
    items = {
        type = "object",
        properties = with_common({
            id = { type = "string", pattern = [[^[a-z0-9]{1,64}$]] },
            service = {
                type = "object",
                properties = {
                    schema = schema_field,
                    host = host,
                    port = port,
                    ssl_verify = { type = "boolean" },
                },
                required = { "host", "port" },
            },
            client = {
                type = "object",
                properties = client_properties,
            },
        }),
        required = { "id" },
        -- service + client with exactly one of token / token_file, or with a client certificate (a token
        -- beside it is optional); or a kubeconfig instead of both.
        anyOf = {
            {
                required = { "service", "client" },
                properties = {
                    client = { oneOf = { { required = { "token" } }, { required = { "token_file" } } } },
                },
            },
            {
                required = { "service", "client" },
                properties = { client = { required = { "cert_file", "key_file" } } },
            },
            { required = { "kubeconfig" } },
        },
    },
}

-- A copy of a schema that checks the same but fills in nothing, and, with `drop_type`, takes any JSON type.
local function checks_only(schema, drop_type)
    if type(schema) ~= "table" then
        return schema
    end
    local out = {}
    for k, v in pairs(schema) do
        if k ~= "default" and not (drop_type and k == "type") then
            out[k] = checks_only(v)
        end
    end
    return out
end

-- APISIX loads this schema at run time (core/config_local.lua checks config.yaml with it in init_by_lua) and, for
-- a value that fails `anyOf`, reports only `object matches none of the required`. The same checks for each form
-- under `allOf` run first and name the field and the rule instead, e.g. `allOf 1 failed: property
-- "watch_idle_timeout" validation failed: expected 5 to be at least 10`: the single-cluster properties (which an
-- array does not have) and the multi-cluster items (which an object does not have). `anyOf` then fills in the
-- defaults.
return {
    allOf = {
        checks_only(single, true),
        { items = checks_only(multi.items) },
    },
    anyOf = { single, multi },
}
