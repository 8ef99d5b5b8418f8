#include "promtool.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace lakemesh::test {

std::string find_promtool() {
    if (const char* p = std::getenv("PROMTOOL")) {
        return p;
    }
    const char* path = std::getenv("PATH");
    const std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        const auto end = std::min(dirs.find(':', start), dirs.size());
        const auto candidate = std::filesystem::path(dirs.substr(start, end - start)) / "promtool";
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate.string();
        }
        start = end + 1;
    }
    return {};
}

std::optional<std::string> promtool_problems(const std::string& promtool, std::string_view text) {
    const auto dir = std::filesystem::temp_directory_path();
    static int seq = 0;
    const auto stem = std::to_string(::getpid()) + "_" + std::to_string(++seq);
    const auto file = dir / ("lakemesh_exposition_" + stem + ".prom");
    const auto report = dir / ("lakemesh_promtool_" + stem + ".txt");
    {
        std::ofstream out(file, std::ios::binary);
        out << text;
    }
    const std::string cmd = "'" + promtool + "' check metrics < '" + file.string() + "' > '" +
                            report.string() + "' 2>&1";
    const int status = std::system(cmd.c_str());
    std::string output;
    {
        std::ifstream in(report, std::ios::binary);
        output.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::filesystem::remove(report);
    std::filesystem::remove(file);
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && output.empty()) {
        return std::nullopt;
    }
    return "promtool status " + std::to_string(status) + ":\n" + output;
}

std::optional<double> sample_value(std::string_view exposition, std::string_view series) {
    std::size_t pos = 0;
    while (pos < exposition.size()) {
        auto end = exposition.find('\n', pos);
        if (end == std::string_view::npos) {
            end = exposition.size();
        }
        const auto line = exposition.substr(pos, end - pos);
        if (line.size() > series.size() && line.substr(0, series.size()) == series &&
            line[series.size()] == ' ') {
            return std::strtod(std::string(line.substr(series.size() + 1)).c_str(), nullptr);
        }
        pos = end + 1;
    }
    return std::nullopt;
}

}  // namespace lakemesh::test
