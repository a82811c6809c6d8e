// TempDir: a fresh directory for one test (mkdtemp under $TMPDIR or /tmp), removed with its
// contents on destruction, even when the test made parts of it read-only. Used by the unit and
// the integration tests alike.
#pragma once

#include <string>
#include <string_view>

namespace lb::testing {

class TempDir {
 public:
  TempDir();  // fails the test (ADD_FAILURE) when no directory can be made
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string File(std::string_view name) const;

 private:
  std::string path_;
};

}  // namespace lb::testing
