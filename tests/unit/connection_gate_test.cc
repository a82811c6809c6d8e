// ConnectionGate (common/include/lb/common/connection_gate.h): counting and admitting are
// tested against the real agent in Integration.ConnectionsTest; here against a bare ROUTER
// whose ZAP handler is the test itself.
#include "lb/common/connection_gate.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>
#include <zmq.hpp>

namespace lb::common {
namespace {

TEST(ConnectionGateTest, ADomainIsWatchedOnceAndASecondWatchIsRefused) {
  zmq::context_t context;
  zmq::socket_t first(context, zmq::socket_type::router);
  zmq::socket_t second(context, zmq::socket_type::router);
  first.set(zmq::sockopt::linger, 0);
  second.set(zmq::sockopt::linger, 0);
  {
    ConnectionGate gate(context, 4);
    ASSERT_TRUE(gate.Watch(first, "command").ok());
    proto::Status again = gate.Watch(second, "command");
    EXPECT_FALSE(again.ok());
    EXPECT_NE(again.message().find("already watched"), std::string::npos) << again.message();
    EXPECT_TRUE(gate.Watch(second, "events").ok()) << "another domain is fine";
    EXPECT_TRUE(gate.Admit("command"));
  }  // the gate joins its threads: reaching here is the point (no std::terminate)
}

// The monitor thread may lag the handshakes (it did on a loaded CI machine, and a connection
// beyond the cap was admitted): Admit waits until the connection asking is counted. Clients
// connect one after another; the one past the cap is refused however the threads run.
TEST(ConnectionGateTest, TheConnectionPastTheCapIsRefusedEvenWhenTheMonitorLags) {
  constexpr std::size_t kCap = 3;
  zmq::context_t context;
  zmq::socket_t zap(context, zmq::socket_type::rep);
  zap.set(zmq::sockopt::linger, 0);
  zap.set(zmq::sockopt::rcvtimeo, 5000);
  zap.bind("inproc://zeromq.zap.01");
  zmq::socket_t server(context, zmq::socket_type::router);
  server.set(zmq::sockopt::linger, 0);
  server.set(zmq::sockopt::zap_domain, "command");
  ConnectionGate gate(context, kCap);
  ASSERT_TRUE(gate.Watch(server, "command").ok());
  server.bind("tcp://127.0.0.1:0");
  const std::string bound = server.get(zmq::sockopt::last_endpoint);

  std::vector<zmq::socket_t> clients;
  std::vector<bool> answers;
  for (std::size_t i = 0; i <= kCap; ++i) {
    clients.emplace_back(context, zmq::socket_type::dealer);
    clients.back().set(zmq::sockopt::linger, 0);
    clients.back().connect(bound);
    // This client's handshake asks ZAP (the test answers as the agent's ZapHandler does).
    std::vector<zmq::message_t> request;
    do {
      request.emplace_back();
      ASSERT_TRUE(zap.recv(request.back())) << "no ZAP request for client " << i;
    } while (request.back().more());
    ASSERT_GE(request.size(), 2u);
    const bool ok = gate.Admit("command");
    answers.push_back(ok);
    zap.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
    zap.send(request[1], zmq::send_flags::sndmore);
    zap.send(zmq::buffer(std::string(ok ? "200" : "400")), zmq::send_flags::sndmore);
    zap.send(zmq::buffer(std::string(ok ? "OK" : "busy")), zmq::send_flags::sndmore);
    zap.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
    zap.send(zmq::str_buffer(""), zmq::send_flags::none);
  }
  for (std::size_t i = 0; i < kCap; ++i) EXPECT_TRUE(answers[i]) << "client " << i;
  EXPECT_FALSE(answers[kCap]) << "the client past the cap was admitted";
  EXPECT_EQ(gate.refused(), 1u);
}

}  // namespace
}  // namespace lb::common
