// Allow-lists of CURVE client public keys (SECURITY.md): which clients a CURVE server accepts.
// Read by the ZapHandler (zap_handler.h) at start and whenever the list changes. No sockets.
#pragma once

#include <set>
#include <string>
#include <string_view>

#include "lb/proto/status.h"

namespace lb::common {

// Parses an allow-list text: one Z85 key per line (anything after whitespace is a comment, for
// a name), or zcert `public-key = "..."` lines; '#' starts a comment. A secret key is refused.
// `origin` names it in errors (kBadRequest "<origin>:<line>: ...").
proto::Result<std::set<std::string>> ParseAllowList(std::string_view text,
                                                    const std::string& origin);

// Reads an allow-list file, or every regular file of a directory (zcert public certificates or
// allow-list files; names starting with '.' are skipped): a key found anywhere is allowed. A
// file that cannot be read is kInternal with the OS's reason.
proto::Result<std::set<std::string>> ReadAllowList(const std::string& path);

}  // namespace lb::common
