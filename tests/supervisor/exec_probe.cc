// Stands in for pgod-worker to show what the worker receives at exec: writes one line to
// stderr with its identity and every open fd, then execs the real pgod-worker beside it with
// the same arguments. (A shell script cannot do this: the shell opens fds of its own.)
#include <dirent.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>
#include <vector>

int main(int, char** argv) {
  std::string line = "EXEC-PROBE pid=" + std::to_string(getpid()) + " fds=";
  DIR* listing = opendir("/proc/self/fd");
  if (listing == nullptr) return 120;
  const int own = dirfd(listing);
  std::vector<int> fds;
  while (auto* entry = readdir(listing)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::stoi(entry->d_name);
    if (fd != own) fds.push_back(fd);
  }
  closedir(listing);
  for (std::size_t i = 0; i < fds.size(); ++i) line += (i ? "," : "") + std::to_string(fds[i]);
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  char self[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) return 121;
  std::string worker(self, static_cast<std::size_t>(length));
  worker = worker.substr(0, worker.rfind('/')) + "/pgod-worker";
  argv[0] = worker.data();
  execv(worker.c_str(), argv);
  std::perror("exec pgod-worker");
  return 122;
}
