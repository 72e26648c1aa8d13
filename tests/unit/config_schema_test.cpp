// Properties of the JSON Schema file itself.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <fstream>
#include <sstream>

namespace tollgate::config {
namespace {

std::string SchemaText() {
  std::ifstream in(std::string(TOLLGATE_SOURCE_DIR) + "/config/tollgate.schema.json");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every object schema must say what may appear in it, so that a typo in a key is an error
// instead of a silently ignored setting.
void ExpectClosedObjects(const rapidjson::Value& node, const std::string& where) {
  if (node.IsObject()) {
    auto type = node.FindMember("type");
    if (type != node.MemberEnd() && type->value.IsString() &&
        std::string(type->value.GetString()) == "object") {
      EXPECT_TRUE(node.HasMember("additionalProperties")) << where;
    }
    for (const auto& member : node.GetObject()) {
      ExpectClosedObjects(member.value, where + "/" + member.name.GetString());
    }
  } else if (node.IsArray()) {
    for (rapidjson::SizeType i = 0; i < node.Size(); ++i) {
      ExpectClosedObjects(node[i], where + "/" + std::to_string(i));
    }
  }
}

TEST(Schema, IsJsonAndEveryObjectIsClosed) {
  rapidjson::Document schema;
  schema.Parse(SchemaText().c_str());
  ASSERT_FALSE(schema.HasParseError());
  ExpectClosedObjects(schema, "");
}

TEST(Schema, CanBeEmbeddedAsARawString) {
  // cmake/embed_schema.cmake wraps the file in R"TOLLGATE_SCHEMA(...)TOLLGATE_SCHEMA".
  EXPECT_EQ(SchemaText().find(")TOLLGATE_SCHEMA\""), std::string::npos);
}

}  // namespace
}  // namespace tollgate::config
