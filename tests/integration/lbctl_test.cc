// lbctl, the real binary, against a real lb-agent and haproxy: what an operator or a script sees
// (stdout, stderr, exit code) for status, reload, get-config, watch, an unreachable agent and bad
// usage, and CURVE (keygen, keys from flags or the environment, a refused key, the allow-list
// edited live). lbctl runs as a child process with pipes, never through a shell.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

extern char** environ;

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string LbctlBinary() { return LBCTL_BINARY; }

// lbctl as a child process: stdin, stdout and stderr are pipes owned by the test. The
// environment is the test's without LBCTL_* and NO_COLOR, so that nothing outside the test
// changes what lbctl does, plus `env` ("NAME=value" entries).
class Lbctl {
 public:
  explicit Lbctl(std::vector<std::string> args, std::string stdin_text = "",
                 const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), LbctlBinary());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry = *e;
      if (entry.rfind("LBCTL_", 0) == 0 || entry.rfind("NO_COLOR=", 0) == 0) continue;
      env_strings.push_back(entry);
    }
    env_strings.insert(env_strings.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);

    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    stdin_fd_ = in[1];
    stdout_fd_ = out[0];
    stderr_fd_ = err[0];
    for (int fd : {stdin_fd_, stdout_fd_, stderr_fd_}) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    stdin_text_ = std::move(stdin_text);
    if (stdin_text_.empty()) CloseStdin();
  }

  ~Lbctl() {
    if (!exited_ && pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {stdin_fd_, stdout_fd_, stderr_fd_}) {
      if (fd >= 0) close(fd);
    }
  }

  // The next whole line of stdout (without '\n'), or nullopt if none came within `timeout`.
  std::optional<std::string> ReadLine(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (auto nl = out_.find('\n', consumed_); nl != std::string::npos) {
        std::string line = out_.substr(consumed_, nl - consumed_);
        consumed_ = nl + 1;
        return line;
      }
      if (stdout_fd_ < 0 || Clock::now() >= deadline) return std::nullopt;
      Pump(deadline);
    }
  }

  // Waits for the exit and all output. Returns the exit code; -signal when killed by one;
  // -1000 when it had to be killed after `timeout`.
  int Wait(milliseconds timeout = milliseconds(60000)) {
    const auto deadline = Clock::now() + timeout;
    while ((stdout_fd_ >= 0 || stderr_fd_ >= 0) && Clock::now() < deadline) Pump(deadline);
    if (!exited_) {
      while (Clock::now() < deadline && waitpid(pid_, &status_, WNOHANG) == 0) {
        std::this_thread::sleep_for(milliseconds(5));
      }
      if (waitpid(pid_, &status_, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status_, 0);
        exited_ = true;
        return -1000;
      }
      exited_ = true;
    }
    if (WIFSIGNALED(status_)) return -WTERMSIG(status_);
    return WEXITSTATUS(status_);
  }

  void Signal(int sig) { kill(pid_, sig); }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  void CloseStdin() {
    if (stdin_fd_ >= 0) close(stdin_fd_);
    stdin_fd_ = -1;
  }

  // One poll over the pipes: writes what stdin still needs, reads what is there.
  void Pump(Clock::time_point deadline) {
    std::vector<pollfd> fds;
    if (stdin_fd_ >= 0) fds.push_back({stdin_fd_, POLLOUT, 0});
    if (stdout_fd_ >= 0) fds.push_back({stdout_fd_, POLLIN, 0});
    if (stderr_fd_ >= 0) fds.push_back({stderr_fd_, POLLIN, 0});
    if (fds.empty()) return;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(left, 0, 100)));
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == stdin_fd_) {
        ssize_t n = write(stdin_fd_, stdin_text_.data() + written_, stdin_text_.size() - written_);
        if (n > 0) written_ += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN) written_ = stdin_text_.size();
        if (written_ >= stdin_text_.size()) CloseStdin();
        continue;
      }
      int& fd = p.fd == stdout_fd_ ? stdout_fd_ : stderr_fd_;
      std::string& buffer = p.fd == stdout_fd_ ? out_ : err_;
      char chunk[65536];
      ssize_t n = read(fd, chunk, sizeof chunk);
      if (n > 0) {
        buffer.append(chunk, static_cast<size_t>(n));
      } else if (n == 0 || errno != EAGAIN) {
        close(fd);
        fd = -1;
      }
    }
  }

  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  std::string stdin_text_;
  size_t written_ = 0;
  std::string out_;
  std::string err_;
  size_t consumed_ = 0;
  bool exited_ = false;
  int status_ = 0;
};

struct Ran {
  int code;
  std::string out;
  std::string err;
  milliseconds elapsed;
};

// Runs lbctl to completion.
Ran RunLbctl(std::vector<std::string> args, std::string stdin_text = "",
             const std::vector<std::string>& env = {}) {
  const auto start = Clock::now();
  Lbctl lbctl(std::move(args), std::move(stdin_text), env);
  const int code = lbctl.Wait();
  return {code, lbctl.out(), lbctl.err(),
          std::chrono::duration_cast<milliseconds>(Clock::now() - start)};
}

std::string Describe(const Ran& r) {
  return "exit " + std::to_string(r.code) + "\n--- stdout ---\n" + r.out + "--- stderr ---\n" +
         r.err;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// An agent whose event socket is in a temp dir of its own (the default is a fixed TCP port) and
// that sends a heartbeat every second.
struct AgentWithEvents {
  TempDir events_dir;
  std::string events = "ipc://" + events_dir.File("events.sock");
  AgentFixture agent{Keys{}, Keys{{"event_endpoint", events}, {"heartbeat_interval", "1"}}};
};

TEST(LbctlTest, StatusPrintsATableOfTheServers) {
  HttpBackend a("a");
  const int closed_port = FreePort();
  AgentWithEvents setup;
  AgentFixture& agent = setup.agent;
  WriteFile(agent.config_path(),
            HaproxyConfig(FreePort(), {{"up1", a.port()}, {"down1", closed_port}}));
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("down1") == "DOWN"; }, milliseconds(10000)));
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("up1") == "UP"; }, milliseconds(10000)));

  Ran r = RunLbctl({"--agent", agent.endpoint(), "status"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out.find('\033'), std::string::npos) << "no colour into a pipe";
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0], "backend scaling_nodes  UP  (2 servers)");
  const std::string& header = lines[1];
  for (const char* heading :
       {"SERVER", "STATUS", "ADDRESS", "WEIGHT", "CHECK", "LAST CHECK", "SESSIONS", "SINCE"}) {
    EXPECT_NE(header.find(heading), std::string::npos) << heading;
  }
  const size_t status_at = header.find("STATUS");
  const size_t address_at = header.find("ADDRESS");
  for (size_t i = 2; i < lines.size(); ++i) {
    const bool up = lines[i].rfind("up1 ", 0) == 0;
    EXPECT_TRUE(up || lines[i].rfind("down1 ", 0) == 0) << lines[i];
    EXPECT_EQ(lines[i].substr(status_at, up ? 3 : 5), up ? "UP " : "DOWN ") << lines[i];
    const std::string address = "127.0.0.1:" + std::to_string(up ? a.port() : closed_port);
    EXPECT_EQ(lines[i].substr(address_at, address.size()), address) << lines[i];
    EXPECT_NE(lines[i].find(up ? "L4OK" : "L4CON"), std::string::npos) << lines[i];
  }

  Ran all = RunLbctl({"status", "*", "--agent", agent.endpoint()});
  EXPECT_EQ(all.code, 0) << Describe(all);
  EXPECT_EQ(all.out, r.out.substr(0, r.out.find('\n')) + all.out.substr(all.out.find('\n')));

  Ran unknown = RunLbctl({"--agent", agent.endpoint(), "status", "nope"});
  EXPECT_EQ(unknown.code, 1) << Describe(unknown);
  EXPECT_EQ(unknown.out, "");
  EXPECT_EQ(unknown.err.rfind("lbctl: bad_request: ", 0), 0u) << unknown.err;
  EXPECT_NE(unknown.err.find("scaling_nodes"), std::string::npos) << "names what exists";
}

TEST(LbctlTest, JsonOutputIsTheAgentsResult) {
  HttpBackend a("a");
  AgentWithEvents setup;
  AgentFixture& agent = setup.agent;
  WriteFile(agent.config_path(), HaproxyConfig(FreePort(), {{"a", a.port()}}));
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("a") == "UP"; }, milliseconds(10000)));

  Ran status = RunLbctl({"--agent", agent.endpoint(), "status", "--json"});
  ASSERT_EQ(status.code, 0) << Describe(status);
  json parsed = json::parse(status.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << status.out;
  ASSERT_EQ(parsed["backends"].size(), 1u);
  EXPECT_EQ(parsed["backends"][0]["name"], "scaling_nodes");
  EXPECT_EQ(parsed["backends"][0]["servers"][0]["name"], "a");
  EXPECT_EQ(parsed["backends"][0]["servers"][0]["status"], "UP");

  for (const char* cmd : {"info", "ping", "get-config"}) {
    Ran r = RunLbctl({"--json", "--agent", agent.endpoint(), cmd});
    EXPECT_EQ(r.code, 0) << cmd << "\n" << Describe(r);
    EXPECT_TRUE(json::accept(r.out)) << cmd << "\n" << r.out;
  }
  Ran refused = RunLbctl({"--json", "--agent", agent.endpoint(), "status", "nope"});
  EXPECT_EQ(refused.code, 1);
  EXPECT_EQ(json::parse(refused.out)["error"]["code"], "bad_request") << refused.out;

  Ran ping = RunLbctl({"--agent", agent.endpoint(), "ping"});
  EXPECT_EQ(ping.code, 0);
  EXPECT_EQ(ping.out.rfind("pong from lb-agent ", 0), 0u) << ping.out;
  Ran info = RunLbctl({"--agent", agent.endpoint(), "info"});
  EXPECT_EQ(info.code, 0);
  EXPECT_NE(info.out.find("haproxy      running, version "), std::string::npos) << info.out;
  EXPECT_NE(info.out.find(agent.config_path()), std::string::npos) << info.out;
}

TEST(LbctlTest, ReloadAppliesAFileAndRefusesAnInvalidOne) {
  HttpBackend a("a");
  HttpBackend b("b");
  AgentWithEvents setup;
  AgentFixture& agent = setup.agent;
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return HttpGetBody(frontend) == "a"; }, milliseconds(10000)));

  const std::string next = agent.dir().File("next.cfg");
  WriteFile(next, HaproxyConfig(frontend, {{"b", b.port()}}));
  Ran valid = RunLbctl({"--agent", agent.endpoint(), "validate", next});
  EXPECT_EQ(valid.code, 0) << Describe(valid);
  EXPECT_EQ(valid.out.rfind("valid\n", 0), 0u) << valid.out;

  const std::string live_before = agent.Ok("get_config")["sha256"];
  Ran reload = RunLbctl({"--agent", agent.endpoint(), "reload", next});
  ASSERT_EQ(reload.code, 0) << Describe(reload);
  const std::string live_after = agent.Ok("get_config")["sha256"];
  EXPECT_EQ(reload.out.rfind("applied\n", 0), 0u) << reload.out;
  EXPECT_NE(reload.out.find("sha256    " + live_after), std::string::npos) << reload.out;
  EXPECT_NE(reload.out.find("previous  " + live_before), std::string::npos) << reload.out;
  EXPECT_NE(reload.out.find("timings   validate "), std::string::npos) << reload.out;
  EXPECT_NE(reload.out.find("warning: "), std::string::npos) << "the test config lacks a "
                                                                "server-state-file";
  EXPECT_TRUE(WaitFor([&] { return HttpGetBody(frontend) == "b"; }, milliseconds(5000)));

  // The same text again, from stdin: nothing to do.
  Ran same = RunLbctl({"--agent", agent.endpoint(), "reload", "-"}, ReadFile(next));
  EXPECT_EQ(same.code, 0) << Describe(same);
  EXPECT_EQ(same.out.rfind("unchanged", 0), 0u) << same.out;

  // A guard that does not match the live config changes nothing.
  Ran guarded = RunLbctl(
      {"--agent", agent.endpoint(), "reload", next, "--expect-sha256", std::string(64, '0')});
  EXPECT_EQ(guarded.code, 1) << Describe(guarded);
  EXPECT_EQ(guarded.err.rfind("lbctl: conflict: ", 0), 0u) << guarded.err;
  EXPECT_NE(guarded.err.find(live_after), std::string::npos) << "names the live sha256";

  // An invalid config: exit 1, the agent's code and message on stderr, haproxy untouched.
  const std::string broken = agent.dir().File("broken.cfg");
  WriteFile(broken, HaproxyConfig(frontend, {{"a", a.port()}}) + "    no_such_directive 1\n");
  auto expected = agent.Call("validate", {{"config", ReadFile(broken)}});
  ASSERT_TRUE(expected.ok());
  ASSERT_EQ(expected->status.code(), proto::ErrorCode::kInvalidConfig);
  Ran invalid = RunLbctl({"--agent", agent.endpoint(), "reload", broken});
  EXPECT_EQ(invalid.code, 1) << Describe(invalid);
  EXPECT_EQ(invalid.out, "");
  EXPECT_EQ(invalid.err.rfind("lbctl: invalid_config: ", 0), 0u) << invalid.err;
  const std::string first_line =
      expected->status.message().substr(0, expected->status.message().find('\n'));
  EXPECT_NE(invalid.err.find(first_line), std::string::npos) << invalid.err;
  EXPECT_NE(invalid.err.find("no_such_directive"), std::string::npos) << invalid.err;
  EXPECT_EQ(agent.Ok("get_config")["sha256"], live_after);
  EXPECT_EQ(HttpGetBody(frontend), "b");
}

TEST(LbctlTest, GetConfigRoundTripsByteIdentical) {
  HttpBackend a("a");
  AgentWithEvents setup;
  AgentFixture& agent = setup.agent;
  const int frontend = FreePort();
  // Tabs, trailing blanks, blank lines at the end and a UTF-8 comment. (haproxy refuses a last
  // line without a newline, so that case cannot reach a live config.)
  std::string config = HaproxyConfig(frontend, {{"a", a.port()}});
  config.insert(0, "# lbctl round trip \xc3\xa9\xe2\x9c\x93  \n\n\t# tab\n");
  config += "\n   \n# the end \t\n\n";
  WriteFile(agent.config_path(), config);
  agent.StartAgent();

  Ran got = RunLbctl({"--agent", agent.endpoint(), "get-config"});
  ASSERT_EQ(got.code, 0) << Describe(got);
  EXPECT_EQ(got.err, "");
  EXPECT_EQ(got.out, ReadFile(agent.config_path())) << "byte-identical";
  EXPECT_EQ(got.out, config);

  // What came out goes back in unchanged.
  const std::string copy = agent.dir().File("copy.cfg");
  WriteFile(copy, got.out);
  Ran back = RunLbctl({"--agent", agent.endpoint(), "--json", "reload", copy});
  ASSERT_EQ(back.code, 0) << Describe(back);
  EXPECT_EQ(json::parse(back.out)["outcome"], "unchanged") << back.out;
}

TEST(LbctlTest, UnreachableAgentExitsThreeWithinTheTimeout) {
  TempDir dir;
  const std::string ipc = "ipc://" + dir.File("nobody.sock");
  const std::string tcp = "tcp://127.0.0.1:" + std::to_string(FreePort());
  for (const std::string& endpoint : {ipc, tcp}) {
    Ran r = RunLbctl({"--agent", endpoint, "--timeout", "1", "status"});
    EXPECT_EQ(r.code, 3) << endpoint << "\n" << Describe(r);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "lbctl: no answer from " + endpoint +
                         " within 1 s (is lb-agent running? is that its command_endpoint? if the "
                         "agent uses CURVE, pass --curve-key and --server-key)\n");
    EXPECT_GE(r.elapsed.count(), 900) << "waits for the agent as long as it was told";
    EXPECT_LT(r.elapsed.count(), 3000) << "and not much longer";
  }
}

TEST(LbctlTest, BadUsageExitsTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "lbctl: no command given"},
           {{"frobnicate"}, "lbctl: unknown command \"frobnicate\""},
           {{"--timeout", "soon", "ping"}, "lbctl: --timeout wants a number of seconds"},
           {{"reload", "/nonexistent/haproxy.cfg"},
            "lbctl: cannot read /nonexistent/haproxy.cfg: No such file or directory"},
           {{"status", "--force"},
            "lbctl: --force is an option of reload, validate and rollback only"},
       }) {
    Ran r = RunLbctl(c.args);
    EXPECT_EQ(r.code, 2) << Describe(r);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind(c.message, 0), 0u) << r.err;
  }
  Ran help = RunLbctl({"help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("Exit status"), std::string::npos);
}

TEST(LbctlTest, WatchJsonPrintsServerEvents) {
  HttpBackend a("a");
  HttpBackend b("b");
  AgentWithEvents setup;
  AgentFixture& agent = setup.agent;
  WriteFile(agent.config_path(), HaproxyConfig(FreePort(), {{"a", a.port()}, {"b", b.port()}}));
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("a") == "UP"; }, milliseconds(10000)));

  Lbctl watch({"--events", setup.events, "watch", "--json", "--for", "60"});
  // Heartbeats come every second: the first one proves the subscription is live.
  std::optional<std::string> first = watch.ReadLine(milliseconds(10000));
  ASSERT_TRUE(first.has_value()) << "no event within 10 s; stderr: " << watch.err() << "\n"
                                 << agent.AgentLog();
  json heartbeat = json::parse(*first, nullptr, false);
  ASSERT_TRUE(heartbeat.is_object()) << *first;
  EXPECT_TRUE(heartbeat.contains("topic")) << *first;
  EXPECT_TRUE(heartbeat.contains("seq")) << *first;

  a.Stop();
  std::optional<json> down;
  const auto deadline = Clock::now() + milliseconds(15000);
  while (!down && Clock::now() < deadline) {
    std::optional<std::string> line = watch.ReadLine(milliseconds(500));
    if (!line) continue;
    json event = json::parse(*line, nullptr, false);
    ASSERT_TRUE(event.is_object()) << "not one JSON object per line: " << *line;
    ASSERT_TRUE(event.contains("topic")) << *line;
    if (event["topic"] == "server/scaling_nodes/a" && event.value("status", json()) == "DOWN") {
      down = event;
    }
  }
  ASSERT_TRUE(down.has_value()) << "no DOWN event for a; output so far:\n"
                                << watch.out() << "stderr:\n"
                                << watch.err();
  EXPECT_EQ((*down)["type"], "server");
  EXPECT_EQ((*down)["backend"], "scaling_nodes");
  EXPECT_EQ((*down)["server"], "a");
  EXPECT_EQ((*down)["previous"], "UP");
  EXPECT_EQ((*down)["address"], "127.0.0.1:" + std::to_string(a.port()));

  watch.Signal(SIGTERM);
  EXPECT_EQ(watch.Wait(milliseconds(5000)), 0) << "SIGTERM ends a watch cleanly";
  EXPECT_EQ(watch.err().find("lost"), std::string::npos) << watch.err();
}

TEST(LbctlTest, WatchCountStopsAfterThatManyEvents) {
  HttpBackend a("a");
  AgentWithEvents setup;
  AgentFixture& agent = setup.agent;
  WriteFile(agent.config_path(), HaproxyConfig(FreePort(), {{"a", a.port()}}));
  agent.StartAgent();
  const std::string config = ReadFile(agent.config_path());

  // Only reload events pass the prefix; reloads are sent until the watch has seen one (a
  // subscription takes a moment to reach the agent).
  Lbctl watch({"--events", setup.events, "watch", "reload", "--count", "1", "--for", "30"});
  std::optional<std::string> line;
  const auto deadline = Clock::now() + milliseconds(15000);
  while (!line && Clock::now() < deadline) {
    agent.Ok("reload", {{"config", config}});
    line = watch.ReadLine(milliseconds(200));
  }
  ASSERT_TRUE(line.has_value()) << "stderr: " << watch.err();
  EXPECT_NE(line->find(" reload unchanged sha256="), std::string::npos) << *line;
  EXPECT_EQ(line->find("seq="), 25u) << "after a 24-character UTC timestamp: " << *line;
  EXPECT_EQ(watch.Wait(milliseconds(5000)), 0) << watch.err();
  EXPECT_EQ(Lines(watch.out()).size(), 1u) << watch.out();
}

// ---- CURVE ----

// The public key in a certificate file written by `lbctl keygen` ("" when unreadable).
std::string PublicKeyOf(const std::string& path) {
  auto cert = common::ReadCertificate(path, /*need_secret=*/false);
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  return cert.ok() ? cert->public_key : "";
}

TEST(LbctlTest, CurveKeygenKeysReachTheAgentOnceAllowListed) {
  HttpBackend a("a");
  AgentWithEvents setup;
  AgentFixture& agent = setup.agent;
  const CurveFiles files = WriteCurveFiles(agent.dir());
  agent.SetSecurityKeys(files.SecurityKeys());
  agent.SetClientKeys(files.client);  // the fixture's own calls
  WriteFile(agent.config_path(), HaproxyConfig(FreePort(), {{"a", a.port()}}));

  // Two operators' keys, made by lbctl: `ops` is allow-listed before the agent starts, `late`
  // only later.
  TempDir keys;
  const std::string ops = keys.File("ops");
  const std::string late = keys.File("late");
  for (const std::string& path : {ops, late}) {
    Ran keygen = RunLbctl({"keygen", path});
    ASSERT_EQ(keygen.code, 0) << Describe(keygen);
    EXPECT_NE(keygen.out.find("public key: " + PublicKeyOf(path)), std::string::npos) << keygen.out;
  }
  Ran again = RunLbctl({"keygen", ops});
  EXPECT_EQ(again.code, 2) << Describe(again);
  WriteFile(files.clients, ReadFile(files.clients) + PublicKeyOf(ops) + " ops\n");
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("a") == "UP"; }, milliseconds(10000)));

  const std::vector<std::string> with_ops = {"--curve-key", ops + "_secret", "--server-key",
                                             files.agent_public};
  auto args = [&](std::vector<std::string> keys_args, std::vector<std::string> command) {
    std::vector<std::string> all = {"--agent", agent.endpoint(), "--timeout", "10"};
    all.insert(all.end(), keys_args.begin(), keys_args.end());
    all.insert(all.end(), command.begin(), command.end());
    return all;
  };
  Ran status = RunLbctl(args(with_ops, {"status"}));
  ASSERT_EQ(status.code, 0) << Describe(status);
  EXPECT_EQ(status.err, "");
  EXPECT_NE(status.out.find("backend scaling_nodes  UP  (1 server)"), std::string::npos)
      << status.out;
  // The same keys from the environment.
  Ran from_env =
      RunLbctl(args({}, {"info", "--json"}), "",
               {"LBCTL_CURVE_KEY=" + ops + "_secret", "LBCTL_SERVER_KEY=" + files.agent_public});
  ASSERT_EQ(from_env.code, 0) << Describe(from_env);
  EXPECT_EQ(json::parse(from_env.out)["security"]["curve"], true) << from_env.out;
  // A reload goes through CURVE too.
  Ran reload =
      RunLbctl(args(with_ops, {"reload", "-"}), HaproxyConfig(FreePort(), {{"a", a.port()}}));
  EXPECT_EQ(reload.code, 0) << Describe(reload);

  // A key the agent does not list: refused at once, with what to do.
  const std::vector<std::string> with_late = {"--curve-key", late + "_secret", "--server-key",
                                              files.agent_public};
  Ran refused = RunLbctl(args(with_late, {"status"}));
  EXPECT_EQ(refused.code, 3) << Describe(refused);
  EXPECT_EQ(refused.out, "");
  EXPECT_NE(refused.err.find("refused lbctl's CURVE key " + PublicKeyOf(late) +
                             " (ZAP status 400): add that public key to its curve_clients"),
            std::string::npos)
      << refused.err;
  EXPECT_LT(refused.elapsed.count(), 5000) << "a refusal is final: no waiting for --timeout";
  // Plaintext: no answer within --timeout, and the hint to pass keys.
  Ran plaintext = RunLbctl({"--agent", agent.endpoint(), "--timeout", "2", "status"});
  EXPECT_EQ(plaintext.code, 3) << Describe(plaintext);
  EXPECT_EQ(plaintext.out, "");
  EXPECT_NE(plaintext.err.find("pass --curve-key"), std::string::npos) << plaintext.err;
  EXPECT_NE(plaintext.err.find("--server-key"), std::string::npos) << plaintext.err;
  // lbctl's keys, but another agent's public key: no handshake.
  Ran wrong_server = RunLbctl({"--agent", agent.endpoint(), "--timeout", "2", "--curve-key",
                               ops + "_secret", "--server-key", files.stranger_public, "ping"});
  EXPECT_EQ(wrong_server.code, 3) << Describe(wrong_server);
  EXPECT_NE(wrong_server.err.find("--server-key is not its public certificate"), std::string::npos)
      << wrong_server.err;
  EXPECT_GE(agent.Ok("info")["security"]["clients_refused"].get<int>(), 1);

  // The allow-list is edited while the agent runs: the refused key works within seconds.
  const auto appended = Clock::now();
  WriteFile(files.clients, ReadFile(files.clients) + PublicKeyOf(late) + " late\n");
  Ran admitted{-1, "", "", milliseconds(0)};
  const bool works = WaitFor(
      [&] {
        admitted = RunLbctl(args(with_late, {"status"}));
        return admitted.code == 0;
      },
      milliseconds(10000));
  EXPECT_TRUE(works) << Describe(admitted) << agent.AgentLog();
  std::cerr << "[ figure ] a key appended to curve_clients was accepted after "
            << std::chrono::duration_cast<milliseconds>(Clock::now() - appended).count() << " ms\n";
  EXPECT_NE(admitted.out.find("backend scaling_nodes"), std::string::npos) << admitted.out;
  EXPECT_TRUE(agent.AgentRunning()) << "no restart";

  // watch with the keys hears the agent's heartbeats (one a second).
  Ran watch = RunLbctl({"--events", setup.events, "watch", "heartbeat", "--count", "1", "--for",
                        "20", "--curve-key", late + "_secret", "--server-key", files.agent_public});
  EXPECT_EQ(watch.code, 0) << Describe(watch);
  EXPECT_NE(watch.out.find("heartbeat"), std::string::npos) << watch.out;
}

}  // namespace
}  // namespace lb::testing
