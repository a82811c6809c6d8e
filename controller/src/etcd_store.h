// EtcdStore: the fleet controller's state in etcd, and the leadership that lets one controller
// of several write it (ARCHITECTURE.md, "A highly available controller").
//
// DESIGN: keys under `prefix`:
//   <prefix>leader          the leader's id, put with its lease;
//   <prefix>state           which blob is the state: {"layout": "blobs", "index": ref};
//   <prefix>blobs/<sha>/<i> piece i of the blob whose SHA-256 is <sha>, at most 256 KiB each.
// The state is the state file's JSON (state_dir.h) with each "args" entry (a push's config)
// replaced by a ref {"sha256", "bytes", "pieces"} to a blob of its own, and that document is a
// blob too. etcd refuses a request above 1.5 MiB (--max-request-bytes), so one key could hold
// neither a large config nor a fleet's worth of them; blobs are written once (content-addressed:
// an unchanged config costs nothing on the next save), each piece its own request, and read
// back only whole (size and SHA-256 checked). A state saved by an earlier version as one
// document under <prefix>state is still read; the next save moves it to blobs.
// Campaign() grants a lease of `lease_ttl_s` and tries `create_revision(leader) == 0 → put
// leader with the lease` every 200 ms until it wins: the leader key's create_revision is then
// this controller's epoch, above every earlier leader's (etcd revisions only grow). A thread
// keeps the lease alive every third of the TTL. Save() is one txn whose compares say that the
// leader key is still ours (its create_revision is our epoch) and that the state is still the
// one we last read or wrote (its mod_revision): a deposed leader, or a second writer, cannot
// change it, and the version counter inside it only ever moves forward. The blobs a save needs
// are put before it, by txns fenced by the leader key alone (a blob nobody names is harmless);
// the save's txn deletes blobs the new state no longer names (64 at most, the rest next time).
// Deposed() is not empty once the lease may have expired: no keepalive acknowledged for the TTL
// since the last acknowledged one was *sent* (so this controller knows before etcd can let a
// successor in), or a keepalive said the lease is gone. The controller then stops serving.
// Thread-safety: Campaign, Load, Save and Resign on the serving thread; Deposed() from any
// thread; the keepalive thread is this class's own.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "etcd_client.h"
#include "lb/proto/status.h"
#include "state_store.h"

namespace lb::controller {

struct EtcdStoreOptions {
  std::string prefix = "/lb-controller/";
  int64_t lease_ttl_s = 3;
  // How often a standby tries to take the leader key.
  std::chrono::milliseconds campaign_interval{200};
};

class EtcdStore : public StateStore {
 public:
  // `client` is owned from now on. `controller_id` goes into the leader key.
  EtcdStore(std::unique_ptr<EtcdClient> client, EtcdStoreOptions options,
            std::string controller_id);
  ~EtcdStore() override;  // stops the keepalive thread; the lease is left to expire (or Resign)
  EtcdStore(const EtcdStore&) = delete;
  EtcdStore& operator=(const EtcdStore&) = delete;

  // Blocks until this controller leads (returns its epoch) or `stop` is set (kUnavailable).
  // Store errors are logged through `log` (at most one line per distinct error) and retried:
  // a standby outlives an etcd outage. `log` also hears who leads while this one waits.
  // Between tries it calls `wait` with the campaign interval (null: it sleeps), so that the
  // caller can serve meanwhile.
  using WaitFn = std::function<void(std::chrono::milliseconds)>;
  proto::Result<uint64_t> Campaign(const std::atomic<bool>& stop,
                                   const std::function<void(const std::string&)>& log,
                                   const WaitFn& wait = nullptr);
  // Revokes the lease: the leader key goes at once and a standby takes over without waiting
  // for the TTL (a clean stop).
  void Resign();

  // After Campaign: the state in etcd (empty when there is none yet). kInternal when etcd
  // cannot be read, a blob is missing or does not match its SHA-256, or the document is not a
  // valid state.
  proto::Result<PersistentState> Load() override;
  // The CAS txn (see the DESIGN). A txn no member answered is tried again (every 100 ms, each
  // try bounded by the client's deadlines) while the lease holds, for 2 s: a raft election
  // after a lost etcd member stalls writes for a second or two. A try that went
  // unanswered but was applied is recognised (the stored text is ours). kInternal: etcd did not
  // answer in time or refused, the lease is gone or another controller leads ("this controller
  // no longer leads ..."), or the state changed under us. Blocks the caller meanwhile.
  proto::Status Save(const PersistentState& state) override;
  std::string Describe() const override;
  uint64_t epoch() const override { return epoch_; }
  std::string Deposed() const override;

 private:
  void KeepAliveLoop();
  using Clock = std::chrono::steady_clock;
  // Runs `txn`, again while no member answers, the lease holds and `give_up` is ahead.
  // `ambiguous`: a try went unanswered (it may have been applied all the same).
  proto::Result<EtcdTxnResult> TxnWithRetries(const EtcdTxn& txn, Clock::time_point give_up,
                                              bool* ambiguous);
  // Puts the pieces in `pieces` that etcd does not hold yet, fenced by the leader key.
  proto::Status PutBlobs(const std::map<std::string, std::string>& pieces,
                         Clock::time_point give_up);

  std::unique_ptr<EtcdClient> client_;
  const EtcdStoreOptions options_;
  const std::string controller_id_;
  const std::string state_key_;
  const std::string leader_key_;

  int64_t lease_ = 0;
  uint64_t epoch_ = 0;
  int64_t state_mod_revision_ = 0;  // of the state as last read or written; 0: none exists
  const std::string blobs_prefix_;
  std::set<std::string> stored_pieces_;  // the piece keys etcd holds, as last read or written

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                  // guarded by mu_
  Clock::time_point lease_valid_until_{};  // guarded by mu_
  std::string lost_;                       // guarded by mu_: why the lease is gone
  std::thread keepalive_;
};

}  // namespace lb::controller
