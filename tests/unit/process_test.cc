// RunProcess: real children, bounded by deadlines; /bin/sh is only ever the program under run.
#include "process.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace lb::agent {
namespace {

using std::chrono::milliseconds;

TEST(RunProcessTest, CapturesStdoutStderrAndExitCode) {
  auto result =
      RunProcess({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, milliseconds(10000));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->out, "out\n");
  EXPECT_EQ(result->err, "err\n");
  EXPECT_EQ(result->exit_code, 3);
  EXPECT_EQ(result->term_signal, 0);
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(DescribeExit(*result, milliseconds(10000)), "exit code 3");
}

TEST(RunProcessTest, KillsChildAtTimeout) {
  const auto start = std::chrono::steady_clock::now();
  auto result = RunProcess({"/bin/sh", "-c", "sleep 30"}, milliseconds(200));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_TRUE(result->timed_out);
  EXPECT_EQ(result->exit_code, -1);
  EXPECT_LT(elapsed, std::chrono::seconds(5));
  EXPECT_GE(elapsed, milliseconds(200));
  EXPECT_EQ(DescribeExit(*result, milliseconds(200)), "timed out after 200 ms");
}

TEST(RunProcessTest, KillsGrandchildrenHoldingThePipesAtTimeout) {
  // The shell backgrounds a sleeper that keeps stdout open, then waits for it.
  const auto start = std::chrono::steady_clock::now();
  auto result =
      RunProcess({"/bin/sh", "-c", "echo started; sleep 30 & sleep 30; wait"}, milliseconds(200));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_TRUE(result->timed_out);
  EXPECT_EQ(result->out, "started\n");
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST(RunProcessTest, MissingBinaryIsAnErrorNamingIt) {
  auto absolute = RunProcess({"/nonexistent/lb-agent-no-such-binary", "-c"}, milliseconds(5000));
  ASSERT_FALSE(absolute.ok());
  EXPECT_NE(absolute.status().message().find("/nonexistent/lb-agent-no-such-binary"),
            std::string::npos)
      << absolute.status().message();
  auto in_path = RunProcess({"lb-agent-no-such-binary-in-path"}, milliseconds(5000));
  ASSERT_FALSE(in_path.ok());
  EXPECT_NE(in_path.status().message().find("lb-agent-no-such-binary-in-path"), std::string::npos)
      << in_path.status().message();
}

TEST(RunProcessTest, PassesArgvVerbatimWithoutAShell) {
  auto result = RunProcess({"/bin/echo", "a b;c", "$HOME", "\"quoted\"", "'single'", "`id`", "*"},
                           milliseconds(5000));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->out, "a b;c $HOME \"quoted\" 'single' `id` *\n");
  EXPECT_EQ(result->exit_code, 0);
}

TEST(RunProcessTest, LooksUpBareNamesInPath) {
  auto result = RunProcess({"echo", "hi"}, milliseconds(5000));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->out, "hi\n");
}

TEST(RunProcessTest, StdinIsDevNull) {
  // cat would block forever on an inherited terminal or pipe; /dev/null ends it at once.
  auto result = RunProcess({"/bin/cat"}, milliseconds(5000));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(result->out, "");
  EXPECT_EQ(result->exit_code, 0);
}

TEST(RunProcessTest, ReportsTheKillingSignal) {
  auto result = RunProcess({"/bin/sh", "-c", "kill -TERM $$"}, milliseconds(5000));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->exit_code, -1);
  EXPECT_EQ(result->term_signal, 15);
  EXPECT_EQ(DescribeExit(*result, milliseconds(5000)), "killed by signal 15");
}

TEST(RunProcessTest, CapsCapturedOutput) {
  // 2 MiB on stdout: the capture stops at kMaxCapture and the child still finishes.
  auto result = RunProcess({"/bin/sh", "-c", "head -c 2097152 /dev/zero; echo done >&2"},
                           milliseconds(20000));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(result->out.size(), kMaxCapture);
  EXPECT_EQ(result->err, "done\n");
  EXPECT_EQ(result->exit_code, 0);
}

TEST(RunProcessTest, EmptyArgvIsAnError) { EXPECT_FALSE(RunProcess({}, milliseconds(100)).ok()); }

}  // namespace
}  // namespace lb::agent
