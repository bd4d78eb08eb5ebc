-- The C ABI of libk8s_disc.so as LuaJIT sees it: the declarations, the return codes (named as in
-- include/k8s_disc.h, which a test checks), finding and loading the library, and reading the documents it writes.

local ffi = require("ffi")

local ffi_string, ffi_new = ffi.string, ffi.new

local _M = {}

ffi.cdef [[
typedef struct k8s_disc_t k8s_disc_t;
const char *k8s_disc_version(void);
int32_t k8s_disc_init(const char *config, size_t config_len, const char *opts, size_t opts_len,
                      const k8s_disc_t **out, char *err, size_t err_cap);
void k8s_disc_release(const k8s_disc_t *h);
int32_t k8s_disc_start(const k8s_disc_t *h, char *err, size_t err_cap);
int32_t k8s_disc_nodes(const k8s_disc_t *h, const char *name, size_t name_len, uint64_t *version,
                       uint64_t *hint, uint8_t *buf, size_t *buf_len);
int32_t k8s_disc_ready(const k8s_disc_t *h);
int64_t k8s_disc_dump(const k8s_disc_t *h, uint8_t *buf, size_t cap);
int64_t k8s_disc_info(const k8s_disc_t *h, uint8_t *buf, size_t cap);
int64_t k8s_disc_lookup(const k8s_disc_t *h, const char *name, size_t name_len, uint8_t *buf, size_t cap);
int64_t k8s_disc_metrics(const k8s_disc_t *h, uint8_t *buf, size_t cap);
int64_t k8s_disc_config_fields(uint8_t *buf, size_t cap);
int32_t k8s_disc_set_log_level(int32_t level);
]]

-- The K8S_DISC_* return codes of include/k8s_disc.h, without the prefix.
_M.UNCHANGED = -1
_M.NOT_FOUND = -2
_M.E_BUFFER = -3
_M.E_BUSY = -4
_M.E_INVALID = -5
_M.E_CONFIG = -6
_M.E_INTERNAL = -7
_M.E_CORRUPT = -8

local function major_minor(v)
    return v:match("^(%d+%.%d+)")
end

-- Finds the library on package.cpath (or at `explicit`), loads it and checks that its MAJOR.MINOR equals
-- `version` (the Lua module's). Returns the library and the path it was loaded from; raises otherwise.
function _M.load(explicit, version)
    local tried = {}
    local candidates = {}
    if explicit then
        candidates[1] = explicit
    else
        for template in package.cpath:gmatch("[^;]+") do
            for _, name in ipairs({ "libk8s_disc", "k8s_disc" }) do
                candidates[#candidates + 1] = (template:gsub("%?", name))
            end
        end
    end
    for _, path in ipairs(candidates) do
        local f = io.open(path, "rb")
        if f then
            f:close()
            local ok, lib = pcall(ffi.load, path)
            if not ok then
                error("k8s-disc: cannot load " .. path .. ": " .. tostring(lib), 0)
            end
            local found = ffi_string(lib.k8s_disc_version())
            if major_minor(found) ~= major_minor(version) then
                error("k8s-disc: " .. path .. " is version " .. found .. " but the Lua module is " .. version, 0)
            end
            return lib, path
        end
        tried[#tried + 1] = path
    end
    error("k8s-disc: libk8s_disc.so not found; tried: " .. table.concat(tried, ", ")
          .. " (set lua_package_cpath or opts.library)", 0)
end

-- Reads a document written by a k8s_disc_* call that returns the length it needs: `fill(out, cap)` writes it and
-- returns its length (negative: an error code).
function _M.read_document(fill)
    local cap = 64 * 1024
    for _ = 1, 4 do
        local out = ffi_new("uint8_t[?]", cap)
        local n = tonumber(fill(out, cap))
        if n < 0 then
            return nil, "k8s-disc: call failed with code " .. n
        end
        if n <= cap then
            return ffi_string(out, n)
        end
        cap = n
    end
    return nil, "k8s-disc: document kept growing"
end

return _M
