// The pieces of `incident send` that need no server: the state file's
// parser, the recipient of a notice, the login file and every refusal of
// the options. Delivery itself runs against a real SMTP server in
// tests/integration/incident_send.test.mjs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "incident/incident.h"

namespace minpanel::incident {
namespace {

const std::string kHash(64, 'a');
const std::string kOtherHash(64, 'b');

std::string Magic() { return std::string(kSendStateMagic) + "\n"; }

TEST(SendStateTest, KeepsTheLastLineOfEachFile) {
  const std::string text = Magic() + "sending notices/users/u1.eml " + kHash + " 10 0\n" +
                           "sent notices/users/u1.eml " + kHash + " 11 250\n" +
                           "sending notices/admins/o1-a1.eml " + kOtherHash + " 12 0\n" +
                           "refused notices/users/u2.eml " + kHash + " 13 550\n";
  auto state = ParseSendState(text);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(state->lines, 4u);
  EXPECT_EQ(state->torn_tail_bytes, 0u);
  EXPECT_EQ(state->valid_bytes, text.size());
  EXPECT_EQ(state->last_time_ms, 13);
  ASSERT_EQ(state->last.size(), 3u);
  const SendStateLine& first = state->last.at("notices/users/u1.eml");
  EXPECT_EQ(first.outcome, SendOutcome::kSent);
  EXPECT_EQ(first.smtp_code, 250u);
  EXPECT_EQ(first.time_ms, 11);
  EXPECT_EQ(state->last.at("notices/admins/o1-a1.eml").outcome, SendOutcome::kSending);
  EXPECT_EQ(state->last.at("notices/users/u2.eml").outcome, SendOutcome::kRefused);
}

TEST(SendStateTest, FormattedLinesParseBack) {
  for (const SendOutcome outcome :
       {SendOutcome::kSending, SendOutcome::kSent, SendOutcome::kRefused, SendOutcome::kUnsent}) {
    const SendStateLine line{outcome, "notices/users/u00000007.eml", kOtherHash, 1795797256279,
                             outcome == SendOutcome::kSending ? 0u : 451u};
    auto state = ParseSendState(Magic() + FormatSendStateLine(line));
    ASSERT_TRUE(state.ok()) << state.status().ToString();
    const SendStateLine& parsed = state->last.at(line.file);
    EXPECT_EQ(parsed.outcome, outcome);
    EXPECT_EQ(parsed.sha256, line.sha256);
    EXPECT_EQ(parsed.time_ms, line.time_ms);
    EXPECT_EQ(parsed.smtp_code, line.smtp_code);
  }
  EXPECT_EQ(SendOutcomeName(SendOutcome::kUnsent), "unsent");
}

TEST(SendStateTest, TornLastLineIsCountedAndIgnored) {
  const std::string whole = Magic() + "sent notices/users/u1.eml " + kHash + " 11 250\n";
  const std::string torn = "sent notices/users/u2.eml " + kHash.substr(0, 9);
  auto state = ParseSendState(whole + torn);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(state->torn_tail_bytes, torn.size());
  EXPECT_EQ(state->valid_bytes, whole.size());
  EXPECT_EQ(state->last.count("notices/users/u2.eml"), 0u);
  // A crash while the file was being made: a part of the magic, nothing else.
  auto created = ParseSendState(Magic().substr(0, 7));
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->valid_bytes, 0u);
  EXPECT_EQ(created->torn_tail_bytes, 7u);
  auto empty = ParseSendState("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->valid_bytes, 0u);
}

TEST(SendStateTest, AnotherFileOrVersionIsCorruption) {
  auto other = ParseSendState("minpanel-send-state 2\n");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kCorruption);
  EXPECT_NE(other.status().message().find("line 1"), std::string::npos);
}

TEST(SendStateTest, EachMalformedLineIsCorruptionNamingItsLine) {
  const std::string good = "sent notices/users/u1.eml " + kHash + " 11 250\n";
  const std::string bad_lines[] = {
      "\n",
      "delivered notices/users/u1.eml " + kHash + " 11 250\n",
      "sent notices/users/u1.eml " + kHash + " 11\n",
      "sent notices/users/u1.eml " + kHash + " 11 250 extra\n",
      "sent  notices/users/u1.eml " + kHash + " 11 250\n",
      "sent /etc/passwd " + kHash + " 11 250\n",
      "sent notices/../../etc/passwd " + kHash + " 11 250\n",
      "sent notices//u1.eml " + kHash + " 11 250\n",
      "sent notices/users/u1 eml.eml " + kHash + " 11 250\n",
      "sent notices/users/u1.eml " + std::string(64, 'A') + " 11 250\n",
      "sent notices/users/u1.eml " + kHash.substr(1) + " 11 250\n",
      "sent notices/users/u1.eml " + kHash + " -11 250\n",
      "sent notices/users/u1.eml " + kHash + " 011 250\n",
      "sent notices/users/u1.eml " + kHash + " 11 600\n",
      "sent notices/users/u1.eml " + kHash + " 11 199\n",
      "sent notices/users/u1.eml " + kHash + " 11 25x\n",
      "sent notices/users/" + std::string(kSendStatePathBytesMax, 'u') + " " + kHash + " 11 250\n",
  };
  for (const std::string& bad : bad_lines) {
    auto state = ParseSendState(Magic() + good + bad + good);
    ASSERT_FALSE(state.ok()) << bad;
    EXPECT_EQ(state.status().code(), StatusCode::kCorruption) << bad;
    EXPECT_NE(state.status().message().find("send-state line 3:"), std::string::npos)
        << state.status().message();
  }
}

std::string Eml(std::string_view headers, std::string_view body = "Hello.\r\n") {
  return std::string(headers) + "\r\n" + std::string(body);
}

TEST(NoticeRecipientTest, TheAddressOfTheOneToHeader) {
  const std::pair<std::string, std::string> cases[] = {
      {"From: Example <security@example.com>\r\nTo: <ana@example.org>\r\nSubject: x\r\n",
       "ana@example.org"},
      {"to: Ana Example <ana@example.org>\r\n", "ana@example.org"},
      {"TO:  ana@example.org \r\n", "ana@example.org"},
      {"To: Ana\r\n <ana@example.org>\r\nSubject: folded\r\n", "ana@example.org"},
      {"Subject: x\r\n\tfolded subject\r\nTo: <ñandú@example.org>\r\n", "ñandú@example.org"},
  };
  for (const auto& [headers, address] : cases) {
    auto recipient = NoticeRecipient(Eml(headers));
    ASSERT_TRUE(recipient.ok()) << headers << recipient.status().ToString();
    EXPECT_EQ(*recipient, address);
  }
  // The body's last line may end without its CRLF, and may hold anything.
  auto open_end = NoticeRecipient(Eml("To: <ana@example.org>\r\n", "To: <eve@example.org>\r\nBye"));
  ASSERT_TRUE(open_end.ok());
  EXPECT_EQ(*open_end, "ana@example.org");
}

TEST(NoticeRecipientTest, RefusesWhatCannotGoToOnePerson) {
  const std::pair<std::string, std::string> cases[] = {
      {Eml("Subject: x\r\n"), "no To: header"},
      {Eml("To: <a@example.org>\r\nTo: <b@example.org>\r\n"), "a second To: header"},
      {Eml("To: <a@example.org>\r\nCc: <b@example.org>\r\n"), "Cc: or Bcc:"},
      {Eml("To: <a@example.org>\r\nbcc: <b@example.org>\r\n"), "Cc: or Bcc:"},
      {Eml("To: <a@example.org>, <b@example.org>\r\n"), "one address in angle brackets"},
      {Eml("To: a@example.org, b@example.org\r\n"), "not one deliverable address"},
      {Eml("To: <a@b@example.org>\r\n"), "not one deliverable address"},
      {Eml("To: <>\r\n"), "not one deliverable address"},
      {Eml("To: <a@example.org\r\n"), "one address in angle brackets"},
      {"To: <a@example.org>\nSubject: x\r\n\r\nbody\r\n", "line 1: does not end in CRLF"},
      {"To: <a@example.org>\r\nSubject: x\r\n", "no blank line"},
      {Eml("To: <a@example.org>\r\nnot a header\r\n"), "line 2: not a header"},
      {Eml("To: <a@example.org>\r\n", std::string(kNoticeLineBytesMax + 1, 'x') + "\r\n"),
       "line 3: longer than kNoticeLineBytesMax"},
      {Eml("To: <a@example.org>\r\n", std::string(kNoticeLineBytesMax + 1, 'x')),
       "longer than kNoticeLineBytesMax"},
      {Eml("To: <a@example.org>\r\n", "a\rb\r\n"), "a bare CR"},
      {Eml("To: <a@example.org>\r\n", std::string("a\0b\r\n", 5)), "NUL"},
  };
  for (const auto& [eml, why] : cases) {
    auto recipient = NoticeRecipient(eml);
    ASSERT_FALSE(recipient.ok()) << eml;
    EXPECT_NE(recipient.status().message().find(why), std::string::npos)
        << recipient.status().message() << " (expected: " << why << ")";
  }
  std::string large = Eml("To: <a@example.org>\r\n");
  while (large.size() <= kNoticeBytesMax) {
    large += std::string(100, 'x') + "\r\n";
  }
  auto too_large = NoticeRecipient(large);
  ASSERT_FALSE(too_large.ok());
  EXPECT_EQ(too_large.status().code(), StatusCode::kResourceExhausted);
}

TEST(SmtpAuthTest, UserThenPasswordWhichMayHoldColons) {
  for (const std::string_view text :
       {"mailer:pa:ss word", "mailer:pa:ss word\n", "mailer:pa:ss word\r\n"}) {
    auto auth = ParseSmtpAuth(text);
    ASSERT_TRUE(auth.ok()) << text;
    EXPECT_EQ(auth->user, "mailer");
    EXPECT_EQ(auth->password, "pa:ss word");
  }
  for (const std::string_view text : {"", "\n", "mailer", ":password", "mailer:", "mailer:pa\nss",
                                      "mailer:pass\n\n", "mail\ter:pass"}) {
    auto auth = ParseSmtpAuth(text);
    ASSERT_FALSE(auth.ok()) << text;
    EXPECT_EQ(auth.status().code(), StatusCode::kInvalidArgument);
    // The message never repeats the secret.
    EXPECT_EQ(auth.status().message().find("pass"), std::string::npos);
  }
  auto long_file = ParseSmtpAuth("mailer:" + std::string(kSmtpAuthFileBytesMax, 'p'));
  ASSERT_FALSE(long_file.ok());
  EXPECT_EQ(long_file.status().code(), StatusCode::kResourceExhausted);
}

class SendOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("minpanel-send-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_ / "notices" / "users");
    std::ofstream(folder_ / "notices" / "users" / "u00000001.eml", std::ios::binary)
        << Eml("To: <ana@example.org>\r\n");
    options_.folder = folder_.string();
    options_.url = "smtp://127.0.0.1:1";
    options_.sender = "security@example.com";
    options_.insecure_localhost = true;
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::string Refusal(const SendOptions& options) {
    auto report = SendNotices(options);
    EXPECT_FALSE(report.ok());
    return report.ok() ? "" : report.status().message();
  }

  std::filesystem::path folder_;
  SendOptions options_;
};

TEST_F(SendOptionsTest, BadOptionsAreRefusedBeforeAnythingIsSent) {
  const std::pair<std::string, std::string> urls[] = {
      {"http://127.0.0.1:25", "the scheme must be smtp"},
      {"not a url", "--smtp"},
      {"smtp://user:secret@127.0.0.1:25", "no credentials in the URL"},
      {"smtp://127.0.0.1:25/?x=1", "no query or fragment"},
      {"smtp://mail.example.com:25", "--insecure-localhost: the host must be"},
      {"smtps://127.0.0.1:465", "--insecure-localhost: only for smtp://"},
  };
  for (const auto& [url, why] : urls) {
    SendOptions options = options_;
    options.url = url;
    const std::string message = Refusal(options);
    EXPECT_NE(message.find(why), std::string::npos) << url << ": " << message;
    EXPECT_EQ(message.find("secret"), std::string::npos);
  }
  SendOptions options = options_;
  options.per_minute = 0;
  EXPECT_NE(Refusal(options).find("kSendPerMinuteMax"), std::string::npos);
  options.per_minute = kSendPerMinuteMax + 1;
  EXPECT_NE(Refusal(options).find("kSendPerMinuteMax"), std::string::npos);
  options = options_;
  options.sender = "Security <security@example.com>";
  EXPECT_NE(Refusal(options).find("--sender"), std::string::npos);
  options = options_;
  options.folder = (folder_ / "nowhere").string();
  EXPECT_NE(Refusal(options).find("no notices"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(folder_ / std::string(kSendStateFileName)));
}

TEST_F(SendOptionsTest, DryRunListsAndWritesNothing) {
  SendOptions options = options_;
  options.dry_run = true;
  std::vector<std::string> told;
  options.progress = [&told](std::string_view line) { told.emplace_back(line); };
  auto report = SendNotices(options);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->notices, 1u);
  EXPECT_EQ(report->would_send, 1u);
  EXPECT_EQ(told, std::vector<std::string>{"would-send notices/users/u00000001.eml"});
  EXPECT_FALSE(std::filesystem::exists(folder_ / std::string(kSendStateFileName)));
}

TEST_F(SendOptionsTest, AnotherRunHoldingTheStateIsRefused) {
  const std::string state = (folder_ / std::string(kSendStateFileName)).string();
  const int fd = ::open(state.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  auto report = SendNotices(options_);
  ::close(fd);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(report.status().message().find("another `minpanel incident send` is running"),
            std::string::npos);
}

TEST_F(SendOptionsTest, ACorruptStateStopsTheRun) {
  std::ofstream(folder_ / std::string(kSendStateFileName)) << Magic() << "sent nonsense\n";
  auto report = SendNotices(options_);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace minpanel::incident
