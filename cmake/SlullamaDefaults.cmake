# One INTERFACE target carries the language standard, warnings and Qt strictness
# defines; every target of the project links it.
add_library(slullama_defaults INTERFACE)
target_compile_features(slullama_defaults INTERFACE cxx_std_20)
target_compile_options(slullama_defaults INTERFACE -Wall -Wextra -Wpedantic)
target_compile_definitions(slullama_defaults INTERFACE
    QT_NO_CAST_FROM_ASCII
    QT_NO_CAST_TO_ASCII
    QT_USE_QSTRINGBUILDER
    QT_NO_CONTEXTLESS_CONNECT
    QT_NO_URL_CAST_FROM_STRING
    SLULLAMA_VERSION="${PROJECT_VERSION}")
if(SLULLAMA_SANITIZE)
    target_compile_options(slullama_defaults INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(slullama_defaults INTERFACE -fsanitize=address,undefined)
endif()
if(SLULLAMA_FUZZ)
    # Coverage for libFuzzer in everything we build; any UB is a finding, not a warning.
    target_compile_options(slullama_defaults INTERFACE -fsanitize=fuzzer-no-link,address,undefined
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    target_link_options(slullama_defaults INTERFACE -fsanitize=address,undefined)
endif()
