// The status page's files (bridge/web/), compiled in: bridge/CMakeLists.txt reads each file at
// configure time into a raw string literal of the generated web_assets.cc, and re-runs when one
// changes.
#pragma once

#include <string_view>

namespace lb::bridge::web {

extern const std::string_view kIndexHtml;  // bridge/web/index.html
extern const std::string_view kAppJs;      // bridge/web/app.js
extern const std::string_view kAppCss;     // bridge/web/app.css
extern const std::string_view kIconSvg;    // bridge/web/icon.svg

}  // namespace lb::bridge::web
