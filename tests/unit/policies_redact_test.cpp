#include <gtest/gtest.h>

#include <string>

#include "policies/redact.h"

namespace tollgate::policies {
namespace {

using Outcome = Redactor::Outcome;

Redactor MustCompile(const std::vector<std::string>& pointers) {
  std::string error;
  std::optional<Redactor> redactor = Redactor::Compile(pointers, &error);
  EXPECT_TRUE(redactor.has_value()) << error;
  return redactor ? *redactor : Redactor();
}

struct Case {
  std::vector<std::string> pointers;
  std::string body;
  Outcome outcome;
  std::string expected;  // the body afterwards
};

void PrintTo(const Case& c, std::ostream* os) { *os << ::testing::PrintToString(c.body); }

class RedactTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(RedactTableTest, Applies) {
  const Case& c = GetParam();
  Redactor redactor = MustCompile(c.pointers);
  std::string body = c.body;
  EXPECT_EQ(redactor.Apply(&body), c.outcome) << c.body;
  EXPECT_EQ(body, c.expected);
}

const Case kCases[] = {
    // A top-level member.
    {{"/token"}, R"({"token":"s","name":"n"})", Outcome::kRedacted, R"({"name":"n"})"},
    {{"/token"}, R"({"name":"n","token":"s"})", Outcome::kRedacted, R"({"name":"n"})"},
    {{"/token"}, R"({"token":{"deep":[1,2]}})", Outcome::kRedacted, R"({})"},
    // `*` over an array of objects.
    {{"/*/token"},
     R"([{"token":"a","id":1},{"id":2},{"token":"c","id":3}])",
     Outcome::kRedacted,
     R"([{"id":1},{"id":2},{"id":3}])"},
    // `*` over the members of an object.
    {{"/*/token"},
     R"({"x":{"token":"a","k":1},"y":{"token":"b"},"z":3})",
     Outcome::kRedacted,
     R"({"x":{"k":1},"y":{},"z":3})"},
    // `*` as the last token empties the container.
    {{"/items/*"}, R"({"items":[1,2,3],"n":3})", Outcome::kRedacted, R"({"items":[],"n":3})"},
    {{"/map/*"}, R"({"map":{"a":1,"b":2}})", Outcome::kRedacted, R"({"map":{}})"},
    // Nested wildcards.
    {{"/data/*/keys/*/secret"},
     R"({"data":[{"keys":[{"secret":"s1","id":"k1"},{"secret":"s2"}]},{"keys":[]}]})",
     Outcome::kRedacted,
     R"({"data":[{"keys":[{"id":"k1"},{}]},{"keys":[]}]})"},
    // Array indexes address elements of the body as received, every match removed.
    {{"/a/0", "/a/2"}, R"({"a":[0,1,2,3]})", Outcome::kRedacted, R"({"a":[1,3]})"},
    {{"/a/1"}, R"({"a":[[1,2],[3,4],[5]]})", Outcome::kRedacted, R"({"a":[[1,2],[5]]})"},
    {{"/a/01"}, R"({"a":[0,1]})", Outcome::kUnchanged, R"({"a":[0,1]})"},
    {{"/a/-"}, R"({"a":[0,1]})", Outcome::kUnchanged, R"({"a":[0,1]})"},
    // A numeric token on an object is a member name.
    {{"/a/0"}, R"({"a":{"0":"x","1":"y"}})", Outcome::kRedacted, R"({"a":{"1":"y"}})"},
    // ~1 is '/', ~0 is '~'.
    {{"/a~1b"}, R"({"a/b":1,"a":{"b":2}})", Outcome::kRedacted, R"({"a":{"b":2}})"},
    {{"/m~0n"}, R"({"m~n":1,"m~0n":2})", Outcome::kRedacted, R"({"m~0n":2})"},
    {{"/~01"}, R"({"~1":1,"/":2})", Outcome::kRedacted, R"({"/":2})"},
    // Overlapping pointers.
    {{"/a", "/a/b"}, R"({"a":{"b":1},"c":2})", Outcome::kRedacted, R"({"c":2})"},
    // Duplicate member names are all removed.
    {{"/k"}, R"({"k":1,"k":2,"j":3})", Outcome::kRedacted, R"({"j":3})"},
    // The empty pointer is the whole body.
    {{""}, R"({"a":1})", Outcome::kRedacted, "null"},
    {{""}, R"("s")", Outcome::kRedacted, "null"},
    // Numbers and strings are copied as written; escapes stay valid JSON.
    {{"/x"},
     R"({"x":0,"big":123456789012345678901234567890,"f":1.50e+10,"s":"a\"b\u00e9\n"})",
     Outcome::kRedacted,
     "{\"big\":123456789012345678901234567890,\"f\":1.50e+10,\"s\":\"a\\\"b\xc3\xa9\\n\"}"},
    // Nothing addressed: the bytes, whitespace included, are left exactly as they were.
    {{"/token"},
     "{ \"name\" : \"n\" ,\n \"n\": 1.0 }",
     Outcome::kUnchanged,
     "{ \"name\" : \"n\" ,\n \"n\": 1.0 }"},
    {{"/a/b"}, R"({"a":[{"b":1}]})", Outcome::kUnchanged, R"({"a":[{"b":1}]})"},
    {{"/a/b"}, R"({"a":"b"})", Outcome::kUnchanged, R"({"a":"b"})"},
    {{"/*/x"}, R"([1,"x",null,true])", Outcome::kUnchanged, R"([1,"x",null,true])"},
    {{"/token"}, R"([{"token":1}])", Outcome::kUnchanged, R"([{"token":1}])"},
    {{"/Token"}, R"({"token":1})", Outcome::kUnchanged, R"({"token":1})"},
    // Empty body: nothing to leak.
    {{"/token"}, "", Outcome::kUnchanged, ""},
    // Not JSON: left as it is, the caller withholds it.
    {{"/token"}, "not json", Outcome::kNotJson, "not json"},
    {{"/token"}, R"({"token":"s")", Outcome::kNotJson, R"({"token":"s")"},
    {{"/token"}, R"({"token":"s"} trailing)", Outcome::kNotJson, R"({"token":"s"} trailing)"},
    {{"/token"}, R"({"token":"s"}{})", Outcome::kNotJson, R"({"token":"s"}{})"},
    {{"/token"}, "<html>502</html>", Outcome::kNotJson, "<html>502</html>"},
    {{"/token"}, "{\"token\":\"\xff\"}", Outcome::kNotJson, "{\"token\":\"\xff\"}"},
};

INSTANTIATE_TEST_SUITE_P(Table, RedactTableTest, ::testing::ValuesIn(kCases));

TEST(RedactTest, NulInsideTheBodyIsNotJson) {
  Redactor redactor = MustCompile({"/token"});
  std::string body = std::string("{\"token\":1}\0{\"x\":2}", 19);
  EXPECT_EQ(redactor.Apply(&body), Outcome::kNotJson);
}

TEST(RedactTest, EmptyRedactorLeavesAnythingAlone) {
  Redactor redactor = MustCompile({});
  EXPECT_TRUE(redactor.empty());
  std::string body = "not json at all";
  EXPECT_EQ(redactor.Apply(&body), Outcome::kUnchanged);
  EXPECT_EQ(body, "not json at all");
}

TEST(RedactTest, DeepNestingDoesNotExhaustTheStack) {
  Redactor redactor = MustCompile({"/a"});
  std::string body = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(redactor.Apply(&body), Outcome::kUnchanged);
  std::string removed = "{\"a\":" + body + ",\"b\":1}";
  EXPECT_EQ(redactor.Apply(&removed), Outcome::kRedacted);
  EXPECT_EQ(removed, R"({"b":1})");
}

TEST(RedactTest, MalformedPointersAreRefused) {
  for (const char* pointer : {"token", "*", "/a~", "/a~2", "/~x"}) {
    std::string error;
    EXPECT_FALSE(Redactor::Compile({pointer}, &error).has_value()) << pointer;
    EXPECT_FALSE(error.empty()) << pointer;
  }
}

TEST(RedactTest, TooManyPointersAreRefused) {
  std::vector<std::string> pointers(Redactor::kMaxPointers + 1, "/x");
  std::string error;
  EXPECT_FALSE(Redactor::Compile(pointers, &error).has_value());
  pointers.pop_back();
  EXPECT_TRUE(Redactor::Compile(pointers, &error).has_value());
}

}  // namespace
}  // namespace tollgate::policies
