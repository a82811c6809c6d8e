// Human-readable forms of the agent's results (proto/PROTOCOL.md, "Commands"). Pure functions
// from the reply's JSON to text; they never throw on a result of an unexpected shape (a missing
// or mistyped field is shown as "-" or left out), because the agent may be newer than lbctl.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "lb/proto/status.h"

namespace lb::cli {

// The `status` result: per backend a heading line and an aligned table with the columns
// SERVER, STATUS, ADDRESS, WEIGHT, CHECK, LAST CHECK, SESSIONS, SINCE. Columns are separated by
// at least two spaces; lines carry no trailing blanks. With `color`, STATUS cells are green (UP),
// red (DOWN) or yellow (anything else) with ANSI escapes that do not count towards alignment.
std::string FormatStatus(const nlohmann::json& result, bool color);

// `reload` and `validate` results: outcome, sha256s, timings, then one "warning: " line each.
std::string FormatReload(const nlohmann::json& result);
std::string FormatValidate(const nlohmann::json& result);

// The `info` result as labelled lines.
std::string FormatInfo(const nlohmann::json& result);

// The `history` result: a heading (the history directory, how many are kept) and a table N,
// TIME, OUTCOME, SHA256 (12 digits), BYTES, with "live" after the live config's entry.
std::string FormatHistory(const nlohmann::json& result);
// The `rollback` result: which entry was rolled back to, then FormatReload.
std::string FormatRollback(const nlohmann::json& result);

// `ping`: "pong from lb-agent <version> at <endpoint> (<rtt>)".
std::string FormatPing(const nlohmann::json& result, const std::string& endpoint, double rtt_ms);

// An error reply for stderr: "lbctl: <code>: <message>" and, per code, what the details add
// (the live sha256 for conflict/superseded, whether a failed reload was rolled back, haproxy's
// lines when the message does not already quote them). Ends with a newline.
std::string FormatRefusal(const proto::Status& status);

// Helpers shared with the event lines.
// "2026-11-24T10:31:02.123Z" (UTC) for unix milliseconds.
std::string FormatTimestamp(int64_t unix_ms);
// "45s", "3m12s", "2h05m", "3d04h"; "-" for a negative value (haproxy does not know).
std::string FormatDuration(int64_t seconds);
// Text a remote side wrote (the agent, haproxy's check output, a backend) made safe for a
// terminal: every escape sequence is removed whole (ESC [ ... final, ESC ] ... BEL/ST, and the
// C1 forms U+009B CSI, U+009D OSC, ...), every other C1 control (U+0080-U+009F) is removed,
// other C0 controls, DEL and U+2028/U+2029 become spaces, and a byte that is not UTF-8 becomes
// U+FFFD. `keep_newlines`: '\n' and '\r' stay (else they become spaces).
std::string SafeText(std::string_view text, bool keep_newlines);
// SafeText for one terminal line: newlines become " | ", surrounding blanks are trimmed.
std::string OneLine(std::string_view text);
// SafeText for stderr: keeps newlines ('\r' becomes a space).
std::string Printable(std::string_view text);
// json -> display text: strings as they are, numbers and booleans printed, null/missing as "-".
std::string Field(const nlohmann::json& object, std::string_view key);

// "1 server", "2 servers".
std::string Count(int64_t n, std::string_view noun);
// A JSON value as text with invalid UTF-8 replaced (json::dump would throw), and C1 controls
// and U+2028/U+2029 escaped (\u009b) like json::dump escapes C0 controls.
std::string DumpJson(const nlohmann::json& value, int indent);

}  // namespace lb::cli
