#include "core/base64.hpp"

#include <gtest/gtest.h>

namespace lakemesh::detail {
namespace {

TEST(base64, rfc4648_vectors) {
    const std::pair<const char*, const char*> v[] = {{"", ""},
                                                     {"f", "Zg=="},
                                                     {"fo", "Zm8="},
                                                     {"foo", "Zm9v"},
                                                     {"foob", "Zm9vYg=="},
                                                     {"fooba", "Zm9vYmE="},
                                                     {"foobar", "Zm9vYmFy"}};
    for (auto [plain, enc] : v) {
        EXPECT_EQ(base64_encode(plain), enc);
        EXPECT_EQ(base64_decode(enc), std::string(plain));
    }
}

TEST(base64, binary_round_trip) {
    std::string all;
    for (int i = 0; i < 256; ++i)
        all.push_back(static_cast<char>(i));
    EXPECT_EQ(base64_decode(base64_encode(all)), all);
}

TEST(base64, rejects_invalid_input) {
    EXPECT_FALSE(base64_decode("Zg="));       // bad length
    EXPECT_FALSE(base64_decode("Zm9v\n"));    // whitespace
    EXPECT_FALSE(base64_decode("Zm$v"));      // bad character
    EXPECT_FALSE(base64_decode("Z==="));      // too much padding
    EXPECT_FALSE(base64_decode("=Zm9"));      // padding first
    EXPECT_FALSE(base64_decode("Zm=v"));      // padding inside the last quad
    EXPECT_FALSE(base64_decode("Zm9v=g=="));  // padding starting a quad
    EXPECT_FALSE(base64_decode("Zm9$Zm9v"));  // bad character in an earlier quad
    EXPECT_FALSE(base64_decode("Zm9vZ\x80=="));
    EXPECT_FALSE(base64_decode("===="));
    // What OpenSSL's EVP_DecodeBlock would skip or take, refused here: whitespace, line ends and
    // '-' around the text, whitespace inside it, '=' before the end.
    EXPECT_FALSE(base64_decode("    Zm9v"));
    EXPECT_FALSE(base64_decode("Zm9v    "));
    EXPECT_FALSE(base64_decode("Zm9v\r\n\r\n"));
    EXPECT_FALSE(base64_decode("Zm9v----"));
    EXPECT_FALSE(base64_decode("Zm 9"));
    EXPECT_FALSE(base64_decode("Zm-9"));
    EXPECT_FALSE(base64_decode("Zm_9"));
    EXPECT_FALSE(base64_decode("Zg==Zm9v"));
    EXPECT_FALSE(base64_decode("Zm======"));
    EXPECT_FALSE(base64_decode("Zm9=Zm9v"));
}

TEST(base64, decode_into_reuses_the_string) {
    std::string out = "old contents that are longer";
    ASSERT_TRUE(base64_decode_into("Zm9vYmE=", out));
    EXPECT_EQ(out, "fooba");
    ASSERT_TRUE(base64_decode_into("", out));
    EXPECT_EQ(out, "");
    EXPECT_FALSE(base64_decode_into("Zm9", out));
}

TEST(base64, bits_past_the_last_byte_are_ignored) {
    // As OpenSSL's decoder (and Go's lenient one) do.
    EXPECT_EQ(base64_decode("Zh=="), std::string("f"));
    EXPECT_EQ(base64_decode("Zm9="), std::string("fo"));
}

}  // namespace
}  // namespace lakemesh::detail
