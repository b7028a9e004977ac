#include "cli/cli.h"

int main(int argc, char** argv) { return minpanel::cli::RunCli(argc, argv); }
