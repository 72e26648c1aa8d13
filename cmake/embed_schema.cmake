# Turns the JSON Schema into a C++ string so that the binary carries its own schema.
file(READ ${IN} content)
set(delim "TOLLGATE_SCHEMA")
file(WRITE ${OUT} "// Generated from config/tollgate.schema.json; do not edit.\n"
  "namespace tollgate::config {\n"
  "extern const char kConfigSchemaJson[];\n"
  "const char kConfigSchemaJson[] = R\"${delim}(${content})${delim}\";\n"
  "}  // namespace tollgate::config\n")
