// The start of any program that loads the shared libssh (gateway_bench row 1c2): it loads libssh
// (and with it OpenSSL, zlib and the Kerberos stack) and returns. pgoctl links libssh, OpenSSL and
// zlib in and leaves Kerberos out (ctl/CMakeLists.txt): row 1c beside this one shows what that saves.
#include <libssh/libssh.h>

int main() { return ssh_version(0) == nullptr ? 1 : 0; }
