#include "gateway/cli.h"

int main(int argc, char** argv) { return tollgate::gateway::RunCli(argc, argv); }
