// Runs a program (argv only, no shell) and captures its stdout, stderr and exit code, for tests
// that check the real binaries as a user would run them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace pgod::test {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& stdin_text = "");

// Stops a child this process started: SIGTERM, then SIGKILL (same PID) if it has not exited
// within `grace`; reaps it either way.
void stop_child(pid_t pid, std::chrono::milliseconds grace);

// A whole file's contents; empty when it cannot be read.
std::string read_file(const std::string& path);

// One HTTP/1.1 request (the whole text) on its own connection to 127.0.0.1:port; the reply,
// read up to its Content-Length (as a forge does: it does not wait for the server to close) or
// for 10 s. status 0: no reply.
struct HttpReply {
  int status = 0;
  std::string text;  // status line, headers and body
};
HttpReply http_exchange(int port, const std::string& request);

// A POST of `body` to `path` with `headers` ("Name: value"), as a webhook sends it.
std::string http_post(const std::string& path, const std::string& body, const std::vector<std::string>& headers);

// A process's resident memory in KiB (VmRSS), and the bytes it has written so far (wchar in
// /proc/PID/io, pipes included); -1 when unreadable.
long rss_kib(pid_t pid);
long bytes_written(pid_t pid);
// The bytes a process has read so far (rchar of /proc/PID/io): its threads, those that have
// exited too, and its reaped children.
long bytes_read(pid_t pid);
// The bytes a process's own live threads have read so far (rchar of each /proc/PID/task/TID/io,
// pipes and sockets included). Not /proc/PID/io's: that adds what its reaped children read.
long bytes_read_by_threads(pid_t pid);

// A directory under $TMPDIR removed (recursively) when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes a file below the directory and returns its path.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

}  // namespace pgod::test
