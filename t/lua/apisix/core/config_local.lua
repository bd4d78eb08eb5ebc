-- Test stand-in for APISIX's apisix.core.config_local: local_conf() returns config.yaml as a table, with the
-- CLI's schema defaults already applied. Tests set the discovery part with set_discovery() in init_by_lua, before
-- requiring apisix.discovery.kubernetes (which is what APISIX's own init does); plugin_attr with set_plugin_attr().

local _M = {}

local conf = { discovery = {}, plugin_attr = {} }

function _M.set_discovery(name, value)
    conf.discovery[name] = value
end

function _M.set_plugin_attr(name, value)
    conf.plugin_attr[name] = value
end

function _M.local_conf()
    return conf
end

return _M
