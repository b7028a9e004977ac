// WebhookQueue with a fake sender (no sockets): order, the bound and what
// it drops, retries and the spool file across restarts. PostJson itself,
// over http and https against real receivers, is in
// tests/integration/audit_webhook.test.mjs and webhook_https.test.mjs.
#include "server/webhook.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace minpanel::server {
namespace {

std::filesystem::path MakeTempFolder() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      (base != nullptr ? std::filesystem::path(base) : std::filesystem::temp_directory_path()) /
      "minpanel-webhook-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return {};
  }
  return pattern;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A sender that records what it is given and fails while `failing` is set.
class FakeReceiver {
 public:
  QueueSender Sender() {
    return [this](const std::string& destination, const std::string& message) {
      std::lock_guard lock(mutex_);
      ++attempts_;
      if (failing_) {
        return std::string("answered 503");
      }
      accepted_.push_back(destination + " " + message);
      return std::string();
    };
  }
  void SetFailing(bool failing) {
    std::lock_guard lock(mutex_);
    failing_ = failing;
  }
  std::vector<std::string> accepted() const {
    std::lock_guard lock(mutex_);
    return accepted_;
  }
  int attempts() const {
    std::lock_guard lock(mutex_);
    return attempts_;
  }

 private:
  mutable std::mutex mutex_;
  bool failing_ = false;
  int attempts_ = 0;
  std::vector<std::string> accepted_;
};

template <typename Check>
bool WaitFor(Check check) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return check();
}

class WebhookQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = MakeTempFolder();
    ASSERT_FALSE(folder_.empty());
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::filesystem::path folder_;
  std::string spool() const { return (folder_ / "checkpoint-webhook.queue").string(); }
};

TEST_F(WebhookQueueTest, SendsInOrderToTheUrlEachWasPushedFor) {
  FakeReceiver receiver;
  WebhookQueue queue("test webhook", "http://a/", 10, 0, receiver.Sender());
  queue.Push("1");
  queue.Push("2");
  ASSERT_TRUE(WaitFor([&] { return receiver.accepted().size() == 2; }));
  queue.SetUrl("http://b/");
  queue.Push("3");
  ASSERT_TRUE(WaitFor([&] { return queue.counts().sent == 3; }));
  EXPECT_EQ(receiver.accepted(),
            (std::vector<std::string>{"http://a/ 1", "http://a/ 2", "http://b/ 3"}));
  queue.SetUrl("");
  queue.Push("4");  // no destination: nothing queued
  EXPECT_EQ(queue.counts().queued, 0u);
}

TEST_F(WebhookQueueTest, WithoutASpoolAFailedMessageIsCountedAndNotRetried) {
  FakeReceiver receiver;
  receiver.SetFailing(true);
  WebhookQueue queue("test webhook", "http://a/", 10, 0, receiver.Sender());
  queue.Push("1");
  ASSERT_TRUE(WaitFor([&] { return queue.counts().failed == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kWebhookRetryFirstMs));
  EXPECT_EQ(receiver.attempts(), 1);
  EXPECT_EQ(queue.counts().queued, 0u);
  EXPECT_FALSE(std::filesystem::exists(spool()));
}

TEST_F(WebhookQueueTest, AFullQueueDropsTheOldestAndCountsIt) {
  FakeReceiver receiver;
  receiver.SetFailing(true);
  // With a spool a failed message stays at the head, so the queue fills;
  // the rest are pushed while the first failure waits kWebhookRetryFirstMs
  // (nothing in flight, so the dropped ones are never sent).
  WebhookQueue queue("test webhook", "http://a/", 3, 0, receiver.Sender(), spool());
  queue.Push("1");
  ASSERT_TRUE(WaitFor([&] { return queue.counts().failed == 1; }));
  for (const char* body : {"2", "3", "4", "5"}) {
    queue.Push(body);
  }
  const WebhookQueue::Counts counts = queue.counts();
  EXPECT_EQ(counts.queued, 3u);
  EXPECT_EQ(counts.dropped, 2u);
  receiver.SetFailing(false);
  ASSERT_TRUE(WaitFor([&] { return queue.counts().queued == 0; }));
  EXPECT_EQ(receiver.accepted(),
            (std::vector<std::string>{"http://a/ 3", "http://a/ 4", "http://a/ 5"}));
}

TEST_F(WebhookQueueTest, WithASpoolAFailedMessageIsRetriedAndKeptAcrossARestartInOrder) {
  FakeReceiver receiver;
  receiver.SetFailing(true);
  {
    WebhookQueue queue("test webhook", "http://a/", 10, 0, receiver.Sender(), spool());
    queue.Push("{\"seq\":1}");
    queue.Push("{\"seq\":2}");
    // Retried after kWebhookRetryFirstMs, the head still first.
    ASSERT_TRUE(WaitFor([&] { return receiver.attempts() >= 2; }));
    EXPECT_EQ(queue.counts().queued, 2u);
    EXPECT_EQ(queue.counts().dropped, 0u);
  }
  EXPECT_EQ(ReadFile(spool()), std::string(kWebhookSpoolMagic) + "\n{\"seq\":1}\n{\"seq\":2}\n");

  receiver.SetFailing(false);
  {
    WebhookQueue queue("test webhook", "http://b/", 10, 0, receiver.Sender(), spool());
    queue.Push("{\"seq\":3}");
    ASSERT_TRUE(WaitFor([&] { return queue.counts().sent == 3; }));
    EXPECT_EQ(receiver.accepted(),
              (std::vector<std::string>{"http://b/ {\"seq\":1}", "http://b/ {\"seq\":2}",
                                        "http://b/ {\"seq\":3}"}));
    EXPECT_TRUE(WaitFor([&] { return !std::filesystem::exists(spool()); }));
  }
  EXPECT_FALSE(std::filesystem::exists(spool()));
}

// A send may wait kWebhookPostTimeoutMs for a receiver that never answers:
// a kill meanwhile must not lose the message, so it is in the file first.
TEST_F(WebhookQueueTest, WithASpoolEachMessageIsInTheFileBeforeItsFirstSend) {
  std::mutex mutex;
  std::vector<std::string> file_at_send;
  WebhookQueue queue(
      "test webhook", "http://a/", 10, 0,
      [&](const std::string& /*url*/, const std::string& /*body*/) {
        std::lock_guard lock(mutex);
        file_at_send.push_back(ReadFile(spool()));
        return std::string();
      },
      spool());
  queue.Push("{\"seq\":1}");
  ASSERT_TRUE(WaitFor([&] { return queue.counts().sent == 1; }));
  queue.Push("{\"seq\":2}");
  ASSERT_TRUE(WaitFor([&] { return queue.counts().sent == 2; }));
  {
    std::lock_guard lock(mutex);
    const std::string magic(kWebhookSpoolMagic);
    EXPECT_EQ(file_at_send,
              (std::vector<std::string>{magic + "\n{\"seq\":1}\n", magic + "\n{\"seq\":2}\n"}));
  }
  // Accepted: the file goes.
  EXPECT_TRUE(WaitFor([&] { return !std::filesystem::exists(spool()); }));
}

// The anomaly alerts' queue exists with no webhook configured: what a
// previous run kept has nowhere to go.
TEST_F(WebhookQueueTest, KeptMessagesWithNoDestinationNowAreDroppedAndTheFileRemoved) {
  std::ofstream(spool()) << kWebhookSpoolMagic << "\n{\"alert\":1}\n{\"alert\":2}\n";
  FakeReceiver receiver;
  WebhookQueue queue("test webhook", "", 10, 0, receiver.Sender(), spool());
  EXPECT_EQ(queue.counts().dropped, 2u);
  EXPECT_EQ(queue.counts().queued, 0u);
  EXPECT_FALSE(std::filesystem::exists(spool()));
  EXPECT_EQ(receiver.attempts(), 0);
}

TEST_F(WebhookQueueTest, WithASpoolAMessageHoldingANewlineIsRefused) {
  FakeReceiver receiver;
  WebhookQueue queue("test webhook", "http://a/", 10, 0, receiver.Sender(), spool());
  queue.Push("two\nlines");
  EXPECT_EQ(queue.counts().dropped, 1u);
  EXPECT_EQ(queue.counts().queued, 0u);
}

// A file it cannot read may hold checkpoints that never reached the
// receiver: it is set aside, whole, never overwritten by the new queue.
TEST_F(WebhookQueueTest, ASpoolFileWithoutTheMagicIsSetAsideAndNeverOverwritten) {
  const std::string unreadable = "minpanel-webhook-queue 9\n{\"seq\":1}\n";
  std::ofstream(spool()) << unreadable;
  FakeReceiver receiver;
  receiver.SetFailing(true);
  {
    WebhookQueue queue("test webhook", "http://a/", 10, 0, receiver.Sender(), spool());
    EXPECT_EQ(queue.counts().queued, 0u);
    queue.Push("{\"seq\":2}");
    ASSERT_TRUE(WaitFor([&] { return receiver.attempts() >= 1; }));
  }
  std::vector<std::filesystem::path> aside;
  for (const auto& entry : std::filesystem::directory_iterator(folder_)) {
    if (entry.path().filename().string().starts_with("checkpoint-webhook.queue.unreadable-")) {
      aside.push_back(entry.path());
    }
  }
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(ReadFile(aside[0]), unreadable);
  // The new queue's own file holds only what it was given.
  EXPECT_EQ(ReadFile(spool()), std::string(kWebhookSpoolMagic) + "\n{\"seq\":2}\n");
}

}  // namespace
}  // namespace minpanel::server
