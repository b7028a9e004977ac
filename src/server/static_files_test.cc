#include "server/static_files.h"

#include <gtest/gtest.h>

namespace minpanel::server {
namespace {

namespace http = boost::beast::http;

// A table of generated files in place of the built dashboard: the handler is
// the real one, only its table is small.
const StaticFile kFiles[] = {
    {"/index.html", "<!doctype html><title>t</title>", "\"aaaa\""},
    {"/assets/app.js", "console.log(1);", "\"bbbb\""},
    {"/assets/app.css", "body{}", "\"cccc\""},
};

Request Get(std::string target) {
  Request request{http::verb::get, target, 11};
  return request;
}

TEST(StaticFilesTest, TheRootIsTheIndexWithItsHeaders) {
  const Response response = HandleStatic(Get("/"), kFiles);
  EXPECT_EQ(response.result(), http::status::ok);
  EXPECT_EQ(response.body(), "<!doctype html><title>t</title>");
  EXPECT_EQ(response[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_EQ(response[http::field::etag], "\"aaaa\"");
  EXPECT_EQ(response[http::field::cache_control], "no-cache");
  EXPECT_EQ(response["Content-Security-Policy"], kDashboardContentSecurityPolicy);
  EXPECT_EQ(response["X-Content-Type-Options"], "nosniff");
}

TEST(StaticFilesTest, ContentTypesFollowTheExtension) {
  EXPECT_EQ(HandleStatic(Get("/assets/app.js"), kFiles)[http::field::content_type],
            "text/javascript; charset=utf-8");
  EXPECT_EQ(HandleStatic(Get("/assets/app.css?v=2"), kFiles)[http::field::content_type],
            "text/css; charset=utf-8");
  EXPECT_EQ(ContentTypeOf("/assets/x.svg"), "image/svg+xml");
  EXPECT_EQ(ContentTypeOf("/assets/x.bin"), "application/octet-stream");
}

TEST(StaticFilesTest, AMatchingEtagIsNotModified) {
  Request request = Get("/assets/app.js");
  request.set(http::field::if_none_match, "\"zzzz\", W/\"bbbb\"");
  const Response response = HandleStatic(request, kFiles);
  EXPECT_EQ(response.result(), http::status::not_modified);
  EXPECT_TRUE(response.body().empty());
  EXPECT_EQ(response[http::field::etag], "\"bbbb\"");

  request.set(http::field::if_none_match, "\"old\"");
  EXPECT_EQ(HandleStatic(request, kFiles).result(), http::status::ok);
}

TEST(StaticFilesTest, NoPathReachesOutsideTheTable) {
  for (const char* target :
       {"/assets/../index.html", "/assets/..%2findex.html", "/assets/%2e%2e/%2e%2e/etc/passwd",
        "/assets/../../../../etc/passwd", "/assets//app.js", "/assets/app.js/", "/assets/APP.JS",
        "/assets/app.js%00.html", "/assets/.\\app.js", "/assets/", "/etc/passwd", "//index.html",
        "/assets/app.js/.."}) {
    const Response response = HandleStatic(Get(target), kFiles);
    EXPECT_EQ(response.result(), http::status::not_found) << target;
    EXPECT_EQ(response.body().find("console.log"), std::string::npos) << target;
  }
  EXPECT_EQ(FindStaticFile(std::string(kStaticPathBytesMax + 1, 'a'), kFiles), nullptr);
}

TEST(StaticFilesTest, OnlyGetIsAllowed) {
  Request request{http::verb::post, "/", 11};
  const Response response = HandleStatic(request, kFiles);
  EXPECT_EQ(response.result(), http::status::method_not_allowed);
  EXPECT_EQ(response[http::field::allow], "GET");
}

TEST(StaticFilesTest, AnUnbuiltDashboardSaysSo) {
  const Response response = HandleStatic(Get("/"), {});
  EXPECT_EQ(response.result(), http::status::not_found);
  EXPECT_NE(response.body().find("make build"), std::string::npos);
}

TEST(StaticFilesTest, TheDashboardPathsAreRouted) {
  EXPECT_TRUE(IsStaticPath("/"));
  EXPECT_TRUE(IsStaticPath("/index.html"));
  EXPECT_TRUE(IsStaticPath("/assets/app.js"));
  EXPECT_FALSE(IsStaticPath("/api/query"));
  EXPECT_EQ(ClassifyTarget("/assets/app.js?v=1"), Route::kRoot);
  EXPECT_EQ(ClassifyTarget("/index.html"), Route::kRoot);
  EXPECT_EQ(ClassifyTarget("/api/query"), Route::kQuery);
}

}  // namespace
}  // namespace minpanel::server
