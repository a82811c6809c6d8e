// ConnectionGate (common/include/lb/common/connection_gate.h): counting and admitting are
// tested against real sockets in Integration.ConnectionsTest; this is the one rule a unit test
// can pin down.
#include "lb/common/connection_gate.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace lb::common
