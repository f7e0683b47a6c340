// The little XML S3 answers in (ListBucketResult, InitiateMultipartUploadResult, Error): text of
// an element by name, and the blocks of a repeated element. Not a general parser: S3's answers
// are flat, and a hostile server's text only ever yields strings (bounded by the body's size).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace common::s3 {

// The text between the first <tag> (or <tag attr…>) and the following </tag>; nullopt when absent.
std::optional<std::string_view> xml_text(std::string_view xml, std::string_view tag);

// The inner text of every <tag>…</tag>, in order (not nested in one another).
std::vector<std::string_view> xml_blocks(std::string_view xml, std::string_view tag);

// Unescapes the five XML entities and numeric references (&#47; &#x2F;); anything else stays.
std::string xml_unescape(std::string_view s);

} // namespace common::s3
