// The floor under any libssh client's start (gateway_bench row 1c2): a program that loads libssh
// (and with it OpenSSL, zlib and GSSAPI) and returns. pgoctl --version beside it shows what
// pgoctl adds of its own.
#include <libssh/libssh.h>

int main() { return ssh_version(0) == nullptr ? 1 : 0; }
