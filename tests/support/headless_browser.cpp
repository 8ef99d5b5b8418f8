#include "headless_browser.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

extern char** environ;

namespace lakemesh::test {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

/// A temporary folder, removed with everything in it.
class temp_dir {
  public:
    temp_dir() {
        std::string pattern = (fs::temp_directory_path() / "lakemesh-chromium-XXXXXX").string();
        if (::mkdtemp(pattern.data()) != nullptr) {
            path_ = pattern;
        }
    }
    ~temp_dir() {
        if (!path_.empty()) {
            std::error_code ignored;
            fs::remove_all(path_, ignored);
        }
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

class fd_guard {
  public:
    explicit fd_guard(int fd = -1) : fd_(fd) {}
    ~fd_guard() { reset(); }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    int get() const { return fd_; }
    void reset(int fd = -1) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

  private:
    int fd_;
};

std::string tail_of(const fs::path& file, std::size_t n) {
    std::ifstream in(file, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return all.size() > n ? all.substr(all.size() - n) : all;
}

/// Runs `args` (args[0] the program), returns its stdout; the whole process group is killed
/// when it runs over `limit`.
std::string run(const std::vector<std::string>& args, const fs::path& dir,
                std::chrono::seconds limit, error_code& ec, std::string* log) {
    ec.clear();
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        ec = error_code(errno, boost::system::system_category());
        return {};
    }
    fd_guard out_read(pipe_fds[0]);
    fd_guard out_write(pipe_fds[1]);
    const fs::path err_file = dir / "stderr.txt";

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
    posix_spawn_file_actions_addopen(&actions, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Its own process group, so that a timeout kills the renderers and helpers too.
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGCHLD);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    // Caches and configuration go to the temporary folder, not to the user's home.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string_view kv(*e);
        if (!kv.starts_with("XDG_CONFIG_HOME=") && !kv.starts_with("XDG_CACHE_HOME=")) {
            env_strings.emplace_back(kv);
        }
    }
    env_strings.push_back("XDG_CONFIG_HOME=" + (dir / "config").string());
    env_strings.push_back("XDG_CACHE_HOME=" + (dir / "cache").string());
    std::vector<char*> envp;
    for (auto& s : env_strings) {
        envp.push_back(s.data());
    }
    envp.push_back(nullptr);
    std::vector<std::string> argv_strings = args;
    std::vector<char*> argv;
    for (auto& s : argv_strings) {
        argv.push_back(s.data());
    }
    argv.push_back(nullptr);

    pid_t pid = -1;
    const int rc = ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    out_write.reset();
    if (rc != 0) {
        ec = error_code(rc, boost::system::system_category());
        return {};
    }

    // Waits on the output and on the process itself (a pidfd), never past the deadline.
    fd_guard exited(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    const auto deadline = clock_type::now() + limit;
    std::string out;
    bool output_done = false;
    bool process_done = false;
    bool timed_out = false;
    while (!output_done || !process_done) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd fds[2] = {{output_done ? -1 : out_read.get(), POLLIN, 0},
                         {process_done ? -1 : exited.get(), POLLIN, 0}};
        const int n = ::poll(fds, 2, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            break;
        }
        if (fds[0].revents != 0) {
            char buf[65536];
            const auto got = ::read(out_read.get(), buf, sizeof buf);
            if (got > 0) {
                out.append(buf, static_cast<std::size_t>(got));
            } else if (got == 0 || errno != EINTR) {
                output_done = true;
            }
        }
        if (exited.get() < 0) {
            // No pidfd (old kernel): the end of the output stands for the end of the process.
            process_done = output_done;
        } else if (fds[1].revents != 0) {
            process_done = true;
        }
    }
    // Whatever is left of the group (a hung browser, or helpers outliving it) goes.
    ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        ec = boost::system::errc::make_error_code(boost::system::errc::timed_out);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ec = boost::system::errc::make_error_code(boost::system::errc::io_error);
    }
    if (ec && log != nullptr) {
        *log = "chromium " + std::string(timed_out ? "timed out" : "failed") + ", stderr tail:\n" +
               tail_of(err_file, 4000);
    }
    return out;
}

std::vector<std::string> base_args(const std::string& chromium, const fs::path& profile,
                                   std::chrono::milliseconds budget) {
    return {chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--hide-scrollbars",
            "--user-data-dir=" + profile.string(),
            "--virtual-time-budget=" + std::to_string(budget.count())};
}

}  // namespace

std::string find_chromium() {
    if (const char* p = std::getenv("LAKEMESH_CHROMIUM"); p != nullptr && *p != '\0') {
        return ::access(p, X_OK) == 0 ? std::string(p) : std::string{};
    }
    const char* path = std::getenv("PATH");
    const std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
    for (const char* name : {"chromium", "chromium-browser"}) {
        std::size_t start = 0;
        while (start <= dirs.size()) {
            const auto end = std::min(dirs.find(':', start), dirs.size());
            const auto candidate = fs::path(dirs.substr(start, end - start)) / name;
            if (::access(candidate.c_str(), X_OK) == 0) {
                return candidate.string();
            }
            start = end + 1;
        }
    }
    return {};
}

std::string render_dom_with_chromium(const std::string& url, const std::string& screenshot_path,
                                     error_code& ec, std::string* log,
                                     std::chrono::milliseconds budget, std::chrono::seconds limit) {
    ec.clear();
    const std::string chromium = find_chromium();
    if (chromium.empty()) {
        ec = boost::system::errc::make_error_code(boost::system::errc::no_such_file_or_directory);
        if (log != nullptr) {
            *log = "chromium not found (install Debian's chromium or set LAKEMESH_CHROMIUM)";
        }
        return {};
    }
    std::string dom;
    {
        temp_dir dir;
        if (dir.path().empty()) {
            ec = error_code(errno, boost::system::system_category());
            return {};
        }
        auto args = base_args(chromium, dir.path() / "profile", budget);
        args.push_back("--dump-dom");
        args.push_back(url);
        dom = run(args, dir.path(), limit, ec, log);
        if (ec) {
            return dom;
        }
    }
    if (!screenshot_path.empty()) {
        temp_dir dir;
        if (dir.path().empty()) {
            ec = error_code(errno, boost::system::system_category());
            return dom;
        }
        const auto target = fs::absolute(screenshot_path);
        std::error_code fs_ec;
        fs::create_directories(target.parent_path(), fs_ec);
        fs::remove(target, fs_ec);
        auto args = base_args(chromium, dir.path() / "profile", budget);
        args.push_back("--window-size=1200,900");
        args.push_back("--screenshot=" + target.string());
        args.push_back(url);
        run(args, dir.path(), limit, ec, log);
    }
    return dom;
}

}  // namespace lakemesh::test
