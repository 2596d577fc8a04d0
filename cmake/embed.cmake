# Writes the C source OUT holding the bytes of IN as NAME[] and NAME_len
# (kin web's page: embedded, so users have no build step and no files to
# install). Run with cmake -DIN=... -DOUT=... -DNAME=... -P embed.cmake.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUT}"
     "/* Generated from ${IN} by cmake/embed.cmake. */\n"
     "#include <stddef.h>\n"
     "const unsigned char ${NAME}[] = {${body}0};\n"
     "const size_t ${NAME}_len = ${bytes};\n")
