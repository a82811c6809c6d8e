#include "etcd_store.h"

#include <algorithm>
#include <future>
#include <vector>

#include "controller_core.h"
#include "lb/common/sha256.h"
#include "state_dir.h"

namespace lb::controller {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;

// How long a save tries again the writes no member answered, all its txns together. A raft
// election (one member of three lost, the leader among them) stalls writes for up to twice
// etcd's election timeout (1 s by default); a try costs at most the client's deadline per
// hanging member.
constexpr std::chrono::milliseconds kWriteRetryBudget{2000};
// A piece of a blob, and the most a txn of puts carries. etcd refuses requests above 1.5 MiB
// (--max-request-bytes' default), and a write must also be committed (fsync'd by a quorum)
// within etcd_timeout: 1 MiB writes took over 1 s on three members sharing a busy disk, 256 KiB
// ones do not.
constexpr size_t kPieceBytes = 256 * 1024;
// Below etcd's --max-txn-ops (128 by default).
constexpr size_t kMaxOpsPerTxn = 64;
constexpr std::string_view kLayout = "blobs";

std::string PieceKey(const std::string& blobs_prefix, std::string_view sha, size_t index) {
  return blobs_prefix + std::string(sha) + "/" + std::to_string(index);
}

// A blob's ref in a document: {"sha256", "bytes", "pieces"}; its pieces go into `pieces`.
json AddBlob(const std::string& text, const std::string& blobs_prefix,
             std::map<std::string, std::string>& pieces) {
  const std::string sha = common::Sha256Hex(text);
  const size_t count = text.empty() ? 1 : (text.size() + kPieceBytes - 1) / kPieceBytes;
  for (size_t i = 0; i < count; ++i) {
    pieces[PieceKey(blobs_prefix, sha, i)] = text.substr(i * kPieceBytes, kPieceBytes);
  }
  return {{"sha256", sha}, {"bytes", text.size()}, {"pieces", count}};
}

std::string Dump(const json& document) {
  return document.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

EtcdStore::EtcdStore(std::unique_ptr<EtcdClient> client, EtcdStoreOptions options,
                     std::string controller_id)
    : client_(std::move(client)),
      options_(std::move(options)),
      controller_id_(std::move(controller_id)),
      state_key_(options_.prefix + "state"),
      leader_key_(options_.prefix + "leader"),
      blobs_prefix_(options_.prefix + "blobs/") {}

EtcdStore::~EtcdStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
}

std::string EtcdStore::Describe() const {
  std::string endpoints;
  for (const auto& e : client_->options().endpoints)
    endpoints += (endpoints.empty() ? "" : ",") + e;
  return "etcd " + state_key_ + " at " + endpoints;
}

Result<uint64_t> EtcdStore::Campaign(const std::atomic<bool>& stop,
                                     const std::function<void(const std::string&)>& log,
                                     const WaitFn& wait) {
  auto pause = [&] {
    if (wait) {
      wait(options_.campaign_interval);
    } else {
      std::this_thread::sleep_for(options_.campaign_interval);
    }
  };
  std::string last_line;
  auto say = [&](const std::string& line) {
    if (line != last_line) log(line);
    last_line = line;
  };
  while (!stop) {
    // A lease first, and a fresh one whenever the last may have expired (an etcd outage).
    if (lease_ == 0 || !Deposed().empty()) {
      const Clock::time_point sent = Clock::now();
      auto lease = client_->GrantLease(options_.lease_ttl_s);
      if (!lease.ok()) {
        say("standby: cannot get a lease from etcd, trying again: " + lease.status().message());
        pause();
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      lease_ = lease->id;
      lease_valid_until_ = sent + std::chrono::seconds(lease->ttl_s);
      lost_.clear();
    }
    if (!keepalive_.joinable()) keepalive_ = std::thread(&EtcdStore::KeepAliveLoop, this);

    EtcdTxn txn;
    txn.compare = {{leader_key_, EtcdCompare::Target::kCreate, 0}};
    txn.success = {EtcdOp::Put(leader_key_, controller_id_, lease_)};
    txn.failure = {EtcdOp::Range(leader_key_)};
    auto result = client_->Txn(txn);
    if (!result.ok()) {
      say("standby: etcd did not answer the campaign, trying again: " + result.status().message());
    } else if (result->succeeded) {
      epoch_ = static_cast<uint64_t>(result->revision);
      return epoch_;
    } else if (!result->ranged.empty() && result->ranged[0].lease == lease_) {
      // An earlier attempt won but its answer was lost: the key is ours.
      epoch_ = static_cast<uint64_t>(result->ranged[0].create_revision);
      return epoch_;
    } else if (!result->ranged.empty()) {
      say("standby: controller " + PrintableId(result->ranged[0].value) + " leads (epoch " +
          std::to_string(result->ranged[0].create_revision) + ")");
    }
    pause();
  }
  return Status(ErrorCode::kUnavailable, "stopped before this controller could lead");
}

void EtcdStore::KeepAliveLoop() {
  const auto period = std::chrono::milliseconds(options_.lease_ttl_s * 1000 / 3);
  std::unique_lock<std::mutex> lock(mu_);
  bool failed = false;
  while (!stopping_) {
    // After a failure, again soon: the lease must be renewed before the local deadline.
    wake_.wait_for(lock, failed ? std::chrono::milliseconds(200) : period,
                   [this] { return stopping_; });
    if (stopping_) return;
    const int64_t lease = lease_;
    // A keepalive that ends after the lease is of no use, and a call left hanging by a silent
    // partition (up to etcd_timeout per member) must not hold up a deposed controller's exit.
    const Clock::time_point valid_until = lease_valid_until_;
    if (Clock::now() >= valid_until) {
      failed = true;  // the lease may be gone: Campaign grants a new one, a leader stops
      continue;
    }
    lock.unlock();
    const Clock::time_point sent = Clock::now();
    auto ttl = client_->KeepAlive(lease, valid_until);
    lock.lock();
    failed = !ttl.ok();
    if (lease != lease_) continue;  // replaced meanwhile
    if (ttl.ok() && *ttl > 0) {
      lease_valid_until_ = std::max(lease_valid_until_, sent + std::chrono::seconds(*ttl));
    } else if (ttl.ok()) {
      lost_ = "etcd says lease " + std::to_string(lease) + " is gone (expired or revoked)";
    }
    // An error: nothing learnt; lease_valid_until_ runs out by itself.
  }
}

std::string EtcdStore::Deposed() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!lost_.empty()) return lost_;
  if (lease_ != 0 && Clock::now() >= lease_valid_until_) {
    return "no keepalive of lease " + std::to_string(lease_) + " was acknowledged by etcd for " +
           std::to_string(options_.lease_ttl_s) +
           " s: it may have expired and another controller may lead";
  }
  return "";
}

void EtcdStore::Resign() {
  int64_t lease = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lease = lease_;
    stopping_ = true;
    lost_ = "resigned";
  }
  wake_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  // Bounded: etcd out of reach must not hold up a stop (the lease then expires by itself).
  if (lease != 0) (void)client_->Revoke(lease, Clock::now() + client_->options().timeout);
}

Result<PersistentState> EtcdStore::Load() {
  auto kv = client_->Get(state_key_);
  if (!kv.ok()) {
    return Status(ErrorCode::kInternal, "cannot read " + Describe() + ": " + kv.status().message());
  }
  // The names of every piece: the state's, and leftovers (of a save cut short) for the next save
  // to delete. Values are read one piece per call below: one reply holding a fleet's configs
  // could not arrive within etcd_timeout, and a standby could then never load what its leader
  // saved piece by piece.
  auto listed = client_->List(blobs_prefix_, /*keys_only=*/true);
  if (!listed.ok()) {
    return Status(ErrorCode::kInternal,
                  "cannot list " + Describe() + "'s blobs: " + listed.status().message());
  }
  stored_pieces_.clear();
  for (auto& piece : *listed) stored_pieces_.insert(std::move(piece.key));
  if (!kv->has_value()) {
    state_mod_revision_ = 0;
    return PersistentState{};
  }
  const std::string origin = Describe();
  json pointer = json::parse((*kv)->value, nullptr, false);
  if (!pointer.is_object() || pointer.value("layout", "") != kLayout) {
    // One document, as saved by an earlier version.
    auto state = DecodeState((*kv)->value, origin);
    if (!state.ok()) return Status(ErrorCode::kInternal, state.status().message());
    state_mod_revision_ = (*kv)->mod_revision;
    return state;
  }
  // A blob, whole: every piece there, the size and the SHA-256 as its ref says.
  auto read_blob = [&](const json& ref, const std::string& what) -> Result<json> {
    if (!ref.is_object() || !ref.contains("sha256") || !ref["sha256"].is_string() ||
        !ref.contains("bytes") || !ref["bytes"].is_number_unsigned() || !ref.contains("pieces") ||
        !ref["pieces"].is_number_unsigned()) {
      return BadState(origin, what + ": not a blob ref {\"sha256\", \"bytes\", \"pieces\"}");
    }
    const std::string sha = ref["sha256"].get<std::string>();
    const uint64_t bytes = ref["bytes"].get<uint64_t>();
    const uint64_t count = ref["pieces"].get<uint64_t>();
    if (count == 0 || count > bytes / kPieceBytes + 1) {
      return BadState(origin, what + ": " + std::to_string(count) + " pieces for " +
                                  std::to_string(bytes) + " bytes");
    }
    std::string text;
    for (uint64_t i = 0; i < count; ++i) {
      const std::string key = PieceKey(blobs_prefix_, sha, i);
      auto piece = client_->Get(key);
      if (!piece.ok()) {
        return Status(ErrorCode::kInternal,
                      "cannot read " + origin + "'s " + key + ": " + piece.status().message());
      }
      if (!piece->has_value()) return BadState(origin, what + ": piece " + key + " is missing");
      text += (*piece)->value;
      if (text.size() > bytes) break;  // the size check below says so
    }
    if (text.size() != bytes || common::Sha256Hex(text) != sha) {
      return BadState(origin, what + ": blob " + sha.substr(0, 12) + "... holds " +
                                  std::to_string(text.size()) +
                                  " bytes that do not match its SHA-256 and size");
    }
    json parsed = json::parse(text, nullptr, false);
    if (parsed.is_discarded()) return BadState(origin, what + ": blob is not JSON");
    return parsed;
  };
  auto document = read_blob(pointer.value("index", json()), "the state document");
  if (!document.ok()) return document.status();
  if (!document->is_object() || !document->contains("args") || !(*document)["args"].is_array()) {
    return BadState(origin, "the state document has no \"args\" list");
  }
  for (size_t i = 0; i < (*document)["args"].size(); ++i) {
    json& entry = (*document)["args"][i];
    auto args = read_blob(entry, "args entry " + std::to_string(i));
    if (!args.ok()) return args.status();
    entry = std::move(*args);
  }
  auto state = DecodeStateDocument(*document, origin);
  if (!state.ok()) return Status(ErrorCode::kInternal, state.status().message());
  state_mod_revision_ = (*kv)->mod_revision;
  return state;
}

Result<EtcdTxnResult> EtcdStore::TxnWithRetries(const EtcdTxn& txn, Clock::time_point give_up,
                                                bool* ambiguous) {
  // No answer from any member is retried while the lease holds: etcd electing a new raft
  // leader (one member lost) stalls writes for a second or two, and that must not fail a push.
  Result<EtcdTxnResult> result = client_->Txn(txn);
  while (!result.ok() && result.status().code() == ErrorCode::kUnavailable && Deposed().empty() &&
         Clock::now() < give_up) {
    *ambiguous = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    result = client_->Txn(txn);
  }
  return result;
}

Status EtcdStore::PutBlobs(const std::map<std::string, std::string>& pieces,
                           Clock::time_point give_up) {
  // The txns, each at most kPieceBytes of values and kMaxOpsPerTxn puts.
  std::vector<EtcdTxn> txns;
  size_t bytes = 0;
  for (const auto& [key, value] : pieces) {
    if (stored_pieces_.count(key) != 0) continue;
    if (txns.empty() || bytes + value.size() > kPieceBytes ||
        txns.back().success.size() >= kMaxOpsPerTxn) {
      txns.emplace_back();
      txns.back().compare = {
          {leader_key_, EtcdCompare::Target::kCreate, static_cast<int64_t>(epoch_)}};
      bytes = 0;
    }
    txns.back().success.push_back(EtcdOp::Put(key, value));
    bytes += value.size();
  }
  // kConcurrentTxns at a time: a txn's cost is mostly its commit (a quorum's fsync), and etcd
  // commits concurrent ones together, so a large config costs about one commit, not one each.
  constexpr size_t kConcurrentTxns = 4;
  for (size_t first = 0; first < txns.size(); first += kConcurrentTxns) {
    const size_t last = std::min(txns.size(), first + kConcurrentTxns);
    std::vector<std::future<Result<EtcdTxnResult>>> running;
    for (size_t i = first; i < last; ++i) {
      running.push_back(std::async(std::launch::async, [this, &txns, i, give_up] {
        bool ambiguous = false;  // puts of content-addressed pieces: a repeat is harmless
        return TxnWithRetries(txns[i], give_up, &ambiguous);
      }));
    }
    Status failed = Status::Ok();
    for (size_t i = first; i < last; ++i) {
      Result<EtcdTxnResult> result = running[i - first].get();
      if (!failed.ok()) continue;  // every future is waited for
      if (!result.ok()) {
        failed = Status(ErrorCode::kInternal,
                        "the fleet store (etcd) did not accept the write of a config's blob: " +
                            result.status().message());
      } else if (!result->succeeded) {
        std::lock_guard<std::mutex> lock(mu_);
        lost_ =
            "the leader key is no longer this controller's (epoch " + std::to_string(epoch_) + ")";
        failed = Status(ErrorCode::kInternal, "this controller no longer leads: " + lost_);
      } else {
        for (const EtcdOp& op : txns[i].success) stored_pieces_.insert(op.key);
      }
    }
    if (!failed.ok()) return failed;
  }
  return Status::Ok();
}

Status EtcdStore::Save(const PersistentState& state) {
  if (std::string deposed = Deposed(); !deposed.empty()) {
    return Status(ErrorCode::kInternal, "this controller no longer leads: " + deposed);
  }
  std::map<std::string, std::string> pieces;
  json document = EncodeStateDocument(state);
  for (json& entry : document["args"]) entry = AddBlob(Dump(entry), blobs_prefix_, pieces);
  const json pointer = {{"layout", kLayout},
                        {"index", AddBlob(Dump(document), blobs_prefix_, pieces)}};
  const std::string text = pointer.dump();
  // One retry budget for the whole save, however many txns it takes.
  const Clock::time_point give_up = Clock::now() + kWriteRetryBudget;
  if (Status put = PutBlobs(pieces, give_up); !put.ok()) return put;

  EtcdTxn txn;
  txn.compare = {{leader_key_, EtcdCompare::Target::kCreate, static_cast<int64_t>(epoch_)},
                 {state_key_, EtcdCompare::Target::kMod, state_mod_revision_}};
  txn.success = {EtcdOp::Put(state_key_, text)};
  // Pieces no state names any more: the ones the previous state needed and leftovers.
  for (const std::string& key : stored_pieces_) {
    if (txn.success.size() >= kMaxOpsPerTxn) break;
    if (pieces.count(key) == 0) txn.success.push_back(EtcdOp::Delete(key));
  }
  txn.failure = {EtcdOp::Range(leader_key_), EtcdOp::Range(state_key_)};
  // Forgotten before they are sent: stored_pieces_ must never name a piece etcd may not hold
  // (a txn applied without an answer), or a later save would skip putting it back. At worst a
  // piece is put again.
  for (size_t i = 1; i < txn.success.size(); ++i) stored_pieces_.erase(txn.success[i].key);
  bool ambiguous = false;  // a try without an answer may have been applied all the same
  Result<EtcdTxnResult> result = TxnWithRetries(txn, give_up, &ambiguous);
  if (!result.ok()) {
    std::string message =
        "the fleet store (etcd) did not accept the write: " + result.status().message();
    if (std::string deposed = Deposed(); !deposed.empty()) {
      message += "; and this controller no longer leads: " + deposed;
    }
    return Status(ErrorCode::kInternal, message);
  }
  if (result->succeeded) {
    state_mod_revision_ = result->revision;
    return Status::Ok();
  }
  const EtcdKeyValue* leader = nullptr;
  const EtcdKeyValue* stored = nullptr;
  for (const auto& kv : result->ranged) {
    if (kv.key == leader_key_) leader = &kv;
    if (kv.key == state_key_) stored = &kv;
  }
  if (ambiguous && stored != nullptr && stored->value == text && leader != nullptr &&
      leader->create_revision == static_cast<int64_t>(epoch_)) {
    state_mod_revision_ = stored->mod_revision;  // the unanswered try was applied
    return Status::Ok();
  }
  if (leader == nullptr || leader->create_revision != static_cast<int64_t>(epoch_)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      lost_ = leader == nullptr ? "the leader key is gone (the lease expired)"
                                : "controller " + PrintableId(leader->value) + " leads (epoch " +
                                      std::to_string(leader->create_revision) + ")";
    }
    return Status(ErrorCode::kInternal, "this controller no longer leads: " + Deposed());
  }
  return Status(ErrorCode::kInternal,
                "the state in " + Describe() + " was changed by another writer (mod_revision " +
                    std::to_string(stored == nullptr ? 0 : stored->mod_revision) + ", expected " +
                    std::to_string(state_mod_revision_) + "); nothing was saved");
}

}  // namespace lb::controller
