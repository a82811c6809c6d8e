// lbctl's Run() in the test's process, with its stdin, stdout and stderr as strings: how the
// unit tests exercise the whole client (against a fake agent or a real lb-controller).
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "lbctl.h"

namespace lb::cli {

struct RunOutput {
  int code = -1;
  std::string out;
  std::string err;
};

inline RunOutput RunLbctl(const std::vector<std::string>& args, const Environment& env,
                          const std::string& stdin_text = "") {
  std::istringstream in(stdin_text);
  std::ostringstream out;
  std::ostringstream err;
  RunOutput result;
  result.code = Run(args, env, in, out, err, [] { return false; });
  result.out = out.str();
  result.err = err.str();
  return result;
}

inline RunOutput RunLbctl(const std::vector<std::string>& args,
                          const std::string& stdin_text = "") {
  return RunLbctl(args, Environment{}, stdin_text);
}

}  // namespace lb::cli
