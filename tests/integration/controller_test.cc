// lb-controller, the binary: its command line (--check, --version), its settings file, its
// signals and its refusal to share a state dir, as systemd (etc/systemd/lb-controller.service)
// and an operator see them. What it does for a fleet: fleet_test.cc, fleet_curve_test.cc.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include "harness.h"

namespace lb::testing {
namespace {

std::string SampleSettings() { return LB_SOURCE_DIR "/etc/lb-controller.cfg"; }

TEST(ControllerDaemonTest, CheckAcceptsTheSampleAndNamesWhatIsWrongInOneLine) {
  CommandResult sample = RunCommand({ControllerBinary(), "--config", SampleSettings(), "--check"});
  EXPECT_EQ(sample.exit_code, 0) << sample.Describe();
  EXPECT_EQ(sample.out, SampleSettings() + ": ok\n");

  TempDir dir;
  WriteFile(dir.File("bad.cfg"), "[controller]\npub = tcp://0.0.0.0:7001\n");
  CommandResult insecure =
      RunCommand({ControllerBinary(), "--config", dir.File("bad.cfg"), "--check"});
  EXPECT_EQ(insecure.exit_code, 2) << insecure.Describe();
  // One logfmt line (common/log.h): the message quoted, its quotes escaped.
  EXPECT_NE(insecure.err.find("level=error prog=lb-controller msg=\"refusing to bind the pub "
                              "socket on \\\"tcp://0.0.0.0:7001\\\" without CURVE"),
            std::string::npos)
      << insecure.err;
  EXPECT_EQ(std::count(insecure.err.begin(), insecure.err.end(), '\n'), 1) << insecure.err;

  WriteFile(dir.File("typo.cfg"), "[controller]\nbeacon_intervall = 1\n");
  CommandResult typo = RunCommand({ControllerBinary(), "--config", dir.File("typo.cfg")});
  EXPECT_EQ(typo.exit_code, 2) << typo.Describe();
  EXPECT_EQ(typo.err.rfind("ts=", 0), 0u) << typo.err;
  const std::string expected = " level=error prog=lb-controller msg=\"" + dir.File("typo.cfg") +
                               ":2: [controller] beacon_intervall: unknown key (see "
                               "etc/lb-controller.cfg)\"\n";
  ASSERT_GE(typo.err.size(), expected.size()) << typo.err;
  EXPECT_EQ(typo.err.substr(typo.err.size() - expected.size()), expected) << typo.err;
  EXPECT_EQ(std::count(typo.err.begin(), typo.err.end(), '\n'), 1) << typo.err;

  CommandResult version = RunCommand({ControllerBinary(), "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("lb-controller ", 0), 0u) << version.out;
  CommandResult unknown = RunCommand({ControllerBinary(), "--serve"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("usage: lb-controller"), std::string::npos) << unknown.err;
}

TEST(ControllerDaemonTest, StopsCleanlyOnASignalAndRefusesAStateDirInUse) {
  TempDir dir;
  FleetController::Options options;
  options.dir = dir.path();
  options.lbctl = LBCTL_BINARY;
  FleetController controller(options);
  controller.Start();
  ASSERT_FALSE(HasFailure());

  // A second controller on the same state dir (other sockets): refused, exit 1, one line.
  FleetController::Options second_options = options;
  second_options.dir = dir.File("second");
  std::filesystem::create_directory(second_options.dir);
  second_options.pub = second_options.router = second_options.control = "";
  FleetController second(second_options);
  second_options = second.options();
  WriteFile(dir.File("second.cfg"), "[controller]\npub = " + second_options.pub +
                                        "\nrouter = " + second_options.router +
                                        "\ncontrol = " + second_options.control +
                                        "\nstate_dir = " + controller.options().state_dir + "\n");
  CommandResult refused =
      RunCommand({ControllerBinary(), "--config", dir.File("second.cfg")}, milliseconds(10000));
  EXPECT_EQ(refused.exit_code, 1) << refused.Describe();
  EXPECT_NE(refused.err.find("is in use by another lb-controller (pid "), std::string::npos)
      << refused.err;

  const int status = controller.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << controller.Log();
  EXPECT_NE(controller.Log().find("prog=lb-controller msg=\"received Terminated, stopping\""),
            std::string::npos)
      << controller.Log();
  EXPECT_NE(controller.Log().find("prog=lb-controller msg=\"controller ctl-test stopping"),
            std::string::npos)
      << controller.Log();
}

}  // namespace
}  // namespace lb::testing
