// The real server in this process, on real sockets: what only its own side
// of a connection can show (socket options), looked up among the process's
// file descriptors once a request over the connection has been answered.
#include "server/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "core/clock.h"
#include "core/file_system.h"

namespace minpanel::server {
namespace {

std::filesystem::path MakeTempFolder() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      (base != nullptr ? std::filesystem::path(base) : std::filesystem::temp_directory_path()) /
      "minpanel-server-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return {};
  }
  return pattern;
}

// A generated self-signed P-256 certificate for 127.0.0.1, as PEM files.
bool WriteSelfSignedCertificate(const std::string& cert_file, const std::string& key_file) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  bool written = key != nullptr && cert != nullptr;
  if (written) {
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    written = X509_sign(cert, key, EVP_sha256()) > 0;
  }
  if (written) {
    FILE* cert_out = std::fopen(cert_file.c_str(), "w");
    FILE* key_out = std::fopen(key_file.c_str(), "w");
    written = cert_out != nullptr && key_out != nullptr && PEM_write_X509(cert_out, cert) == 1 &&
              PEM_write_PrivateKey(key_out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    if (cert_out != nullptr) {
      std::fclose(cert_out);
    }
    if (key_out != nullptr) {
      std::fclose(key_out);
    }
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  return written;
}

int ConnectLoopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A port no one listens on now ("listen" takes no port 0): bound by the
// kernel's choice, then released for the server to bind.
std::string FreeLoopbackAddress() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return "127.0.0.1:0";
  }
  ::close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
}

constexpr std::string_view kHealthRequest =
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n";

// Sends GET /healthz and reads the start of the answer: once it is read,
// the server has accepted the connection and set it up.
std::string AskHealth(int fd) {
  if (::send(fd, kHealthRequest.data(), kHealthRequest.size(), 0) !=
      static_cast<ssize_t>(kHealthRequest.size())) {
    return {};
  }
  char answer[64] = {};
  const ssize_t got = ::recv(fd, answer, sizeof(answer) - 1, 0);
  return got > 0 ? std::string(answer, static_cast<size_t>(got)) : std::string();
}

std::string AskHealthOverTls(SSL* ssl) {
  if (SSL_write(ssl, kHealthRequest.data(), static_cast<int>(kHealthRequest.size())) !=
      static_cast<int>(kHealthRequest.size())) {
    return {};
  }
  char answer[64] = {};
  const int got = SSL_read(ssl, answer, sizeof(answer) - 1);
  return got > 0 ? std::string(answer, static_cast<size_t>(got)) : std::string();
}

bool SameAddress(const sockaddr_in& left, const sockaddr_in& right) {
  return left.sin_family == right.sin_family && left.sin_port == right.sin_port &&
         left.sin_addr.s_addr == right.sin_addr.s_addr;
}

// TCP_NODELAY of the server's end of the client connection `client_fd`:
// the socket of this process whose local address is the client's peer and
// whose peer is the client's local address. nullopt: no such socket.
std::optional<int> ServerSideNoDelay(int client_fd) {
  sockaddr_in client_local{};
  sockaddr_in client_peer{};
  socklen_t length = sizeof(client_local);
  ::getsockname(client_fd, reinterpret_cast<sockaddr*>(&client_local), &length);
  length = sizeof(client_peer);
  ::getpeername(client_fd, reinterpret_cast<sockaddr*>(&client_peer), &length);
  DIR* folder = ::opendir("/proc/self/fd");
  if (folder == nullptr) {
    return std::nullopt;
  }
  std::optional<int> found;
  while (const dirent* entry = ::readdir(folder)) {
    const int fd = std::atoi(entry->d_name);
    struct stat status {};
    if (fd == client_fd || fd == ::dirfd(folder) || ::fstat(fd, &status) != 0 ||
        !S_ISSOCK(status.st_mode)) {
      continue;
    }
    sockaddr_in local{};
    sockaddr_in peer{};
    length = sizeof(local);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
      continue;
    }
    length = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) {
      continue;
    }
    if (SameAddress(local, client_peer) && SameAddress(peer, client_local)) {
      int no_delay = 0;
      length = sizeof(no_delay);
      if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &no_delay, &length) == 0) {
        found = no_delay;
      }
    }
  }
  ::closedir(folder);
  return found;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempFolder();
    ASSERT_FALSE(root_.empty());
    config_.data_folder = (root_ / "data").string();
    config_.key_folder = (root_ / "keys").string();
    config_.listen = FreeLoopbackAddress();
    config_.io_threads = 1;
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Stop();
      runner_.join();
    }
    server_.reset();
    service_.reset();
    std::filesystem::remove_all(root_);
  }

  void StartServer() {
    auto service = service::Service::Open(config_, NewPosixFileSystem(), NewSystemClock());
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    service_ = std::move(service).value();
    auto server = Server::Start(config_, service_.get(), nullptr);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    runner_ = std::thread([this] { ran_ = server_->Run(); });
  }

  std::filesystem::path root_;
  service::Config config_;
  std::unique_ptr<service::Service> service_;
  std::unique_ptr<Server> server_;
  std::thread runner_;
  Status ran_;
};

// With Nagle's algorithm on, a response's short last segment waited for
// the client's delayed ACK: every export took some 40 ms longer than it
// worked (docs/benchmarks.md, "TCP_NODELAY"). Both listeners, TLS or not.
TEST_F(ServerTest, AcceptedConnectionsSendWithoutDelayOnBothListenersWithAndWithoutTls) {
  do {
    config_.listen_api = FreeLoopbackAddress();
  } while (config_.listen_api == config_.listen);
  config_.tls_api.cert_file = (root_ / "api.crt").string();
  config_.tls_api.key_file = (root_ / "api.key").string();
  ASSERT_TRUE(WriteSelfSignedCertificate(config_.tls_api.cert_file, config_.tls_api.key_file));
  StartServer();
  ASSERT_NE(server_, nullptr);

  const int ingest_fd = ConnectLoopback(server_->port());
  ASSERT_GE(ingest_fd, 0);
  EXPECT_EQ(AskHealth(ingest_fd).substr(0, 12), "HTTP/1.1 200");
  EXPECT_EQ(ServerSideNoDelay(ingest_fd), std::optional<int>(1));

  const int api_fd = ConnectLoopback(server_->api_port());
  ASSERT_GE(api_fd, 0);
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(context, nullptr);
  SSL* ssl = SSL_new(context);  // the generated certificate is not verified
  SSL_set_fd(ssl, api_fd);
  ASSERT_EQ(SSL_connect(ssl), 1) << ERR_error_string(ERR_get_error(), nullptr);
  EXPECT_EQ(AskHealthOverTls(ssl).substr(0, 12), "HTTP/1.1 200");
  EXPECT_EQ(ServerSideNoDelay(api_fd), std::optional<int>(1));

  SSL_shutdown(ssl);
  SSL_free(ssl);
  SSL_CTX_free(context);
  ::close(api_fd);
  ::close(ingest_fd);
}

TEST_F(ServerTest, AcceptedConnectionsSendWithoutDelayOnTheOneListener) {
  StartServer();
  ASSERT_NE(server_, nullptr);
  const int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(AskHealth(fd).substr(0, 12), "HTTP/1.1 200");
  EXPECT_EQ(ServerSideNoDelay(fd), std::optional<int>(1));
  ::close(fd);
}

}  // namespace
}  // namespace minpanel::server
