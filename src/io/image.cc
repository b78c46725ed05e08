// PNG (libpng's simplified png_image API) and JPEG (libjpeg) decoding to 8-bit
// gray or RGB. Images over kMaxPixels are refused before any pixel buffer is
// allocated, so a header that claims a huge image costs nothing.
//
// libjpeg reports errors through a callback that must not return; it
// longjmps back into decode_jpeg_c, a function that holds no C++ object with a
// destructor (skipping one would be undefined behaviour), and frees its own
// malloc'd buffer on that path.
// clang-format off
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t
#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h: the warning codes (JWRN_JPEG_EOF)
// clang-format on
#include <png.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "io/dataset_internal.h"
#include "io/input_file.h"

namespace kvant {

namespace {

constexpr int64_t kMaxPixels = int64_t{1} << 28;  // 268M pixels (16384 x 16384)

std::string read_whole(const std::filesystem::path& file) {
  return InputFile(file).read_all();  // refuses FIFOs, devices (io/input_file.h)
}

Image decode_png(const std::string& bytes, const std::string& name) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    data_error(name + ": bad PNG (" + png.message + ")");
  }
  Image image;
  image.width = png.width;
  image.height = png.height;
  image.channels = (png.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
  if (image.width * image.height > kMaxPixels) {
    png_image_free(&png);
    data_error(name + ": PNG of " + std::to_string(image.width) + "x" + std::to_string(image.height) +
               " pixels is too large");
  }
  // Alpha is dropped by compositing on black; 16-bit and palette become 8-bit.
  png.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  try {
    check_memory(image.width * image.height * image.channels, name + ": PNG pixels");
  } catch (const Error&) {
    png_image_free(&png);
    throw;
  }
  image.pixels.resize(static_cast<size_t>(image.width * image.height * image.channels));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    data_error(name + ": bad PNG (" + png.message + ")");
  }
  return image;
}

struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;  // libjpeg warned "Premature end of JPEG file" and padded with gray
};

void on_jpeg_error(j_common_ptr info) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(info->err);
  (*info->err->format_message)(info, manager->message);
  std::longjmp(manager->jump, 1);
}
// Warnings (level -1) are ignored except a premature end of the data, which
// libjpeg papers over with gray rows: a truncated file is an error here.
void on_jpeg_message(j_common_ptr info, int level) {
  if (level == -1 && info->err->msg_code == JWRN_JPEG_EOF) {
    reinterpret_cast<JpegErrorManager*>(info->err)->truncated = true;
  }
}

// C-style: returns false with `message` set, or true with a malloc'd buffer.
bool decode_jpeg_c(const unsigned char* data, size_t size, int64_t max_bytes, unsigned char** out, int64_t* width,
                   int64_t* height, int64_t* channels, char* message) {
  jpeg_decompress_struct info;
  JpegErrorManager errors;
  unsigned char* volatile pixels = nullptr;
  info.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = on_jpeg_error;
  errors.base.emit_message = on_jpeg_message;
  errors.truncated = false;
  if (setjmp(errors.jump)) {
    std::snprintf(message, JMSG_LENGTH_MAX, "%s", errors.message);
    jpeg_destroy_decompress(&info);
    std::free(pixels);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&info, TRUE);
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    std::snprintf(message, JMSG_LENGTH_MAX, "CMYK JPEG is not supported");
    jpeg_destroy_decompress(&info);
    return false;
  }
  info.out_color_space = info.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  if (int64_t{info.image_width} * info.image_height > kMaxPixels) {
    std::snprintf(message, JMSG_LENGTH_MAX, "%ux%u pixels is too large", info.image_width, info.image_height);
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_start_decompress(&info);
  const size_t row = size_t{info.output_width} * static_cast<size_t>(info.output_components);
  if (static_cast<int64_t>(row * info.output_height) > max_bytes) {
    std::snprintf(message, JMSG_LENGTH_MAX, "%ux%u pixels need %zu bytes, more than the memory budget leaves",
                  info.output_width, info.output_height, row * info.output_height);
    jpeg_destroy_decompress(&info);
    return false;
  }
  pixels = static_cast<unsigned char*>(std::malloc(row * info.output_height + 1));
  if (!pixels) {
    std::snprintf(message, JMSG_LENGTH_MAX, "out of memory");
    jpeg_destroy_decompress(&info);
    return false;
  }
  while (info.output_scanline < info.output_height) {
    JSAMPROW rows[1] = {pixels + row * info.output_scanline};
    jpeg_read_scanlines(&info, rows, 1);
  }
  *width = info.output_width;
  *height = info.output_height;
  *channels = info.output_components;
  if (errors.truncated) {
    std::snprintf(message, JMSG_LENGTH_MAX, "truncated file: the image data ends early");
    jpeg_destroy_decompress(&info);
    std::free(pixels);
    return false;
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  *out = pixels;
  return true;
}

Image decode_jpeg(const std::string& bytes, const std::string& name) {
  unsigned char* pixels = nullptr;
  char message[JMSG_LENGTH_MAX] = {};
  Image image;
  const int64_t room = memory_budget_bytes() - std::min(memory_in_use_bytes(), memory_budget_bytes());
  if (!decode_jpeg_c(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), room, &pixels, &image.width,
                     &image.height, &image.channels, message)) {
    data_error(name + ": bad JPEG (" + message + ")");
  }
  image.pixels.assign(pixels, pixels + image.width * image.height * image.channels);
  std::free(pixels);
  return image;
}

}  // namespace

bool is_image_file(const std::filesystem::path& file) {
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

Image decode_image(const std::filesystem::path& file) {
  const std::string bytes = read_whole(file);
  const std::string name = file.string();
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), "\x89PNG\r\n\x1a\n", 8) == 0) return decode_png(bytes, name);
  if (bytes.size() >= 3 && std::memcmp(bytes.data(), "\xff\xd8\xff", 3) == 0) return decode_jpeg(bytes, name);
  data_error(name + ": neither a PNG nor a JPEG file");
}

}  // namespace kvant
