# CPU-only build with node-gyp, for machines without CMake (npm run build:gyp).
# The CMake build (npm run build) is the full one, with the CUDA backend.
{
  "variables": {
    "imprint_blas%": "<!(node lib/build/find-blas.mjs)"
  },
  "targets": [
    {
      "target_name": "imprint",
      "sources": [
        "<!@(node -e \"const fs=require('fs');for(const d of ['core','cpu','ops','io','models','napi'])for(const f of fs.readdirSync('csrc/'+d).sort())if(f.endsWith('.cc'))console.log('csrc/'+d+'/'+f)\")",
        "csrc/cuda_stub.cc"
      ],
      "include_dirs": [
        "csrc",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++1y", "-std=gnu++20"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-ffp-contract=off"]
      },
      "conditions": [
        # LAPACK (csrc/cpu/lapack.cc) from the same shared libopenblas, which brings its own
        # libgfortran; the OpenBLAS packages of Debian, Ubuntu and Homebrew carry it.
        ["imprint_blas=='openblas'", {
          "defines": ["IMPRINT_HAVE_OPENBLAS", "IMPRINT_HAVE_LAPACK"],
          "include_dirs": ["<!(node lib/build/find-blas.mjs --include)"],
          "libraries": ["-lopenblas"]
        }]
      ]
    }
  ]
}
