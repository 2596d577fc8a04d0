/* The kin command. */
#include <stdio.h>
#include <string.h>

int
main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: kin COMMAND [ARGS]\n");
        return argc < 2;
    }
    fprintf(stderr, "kin: unknown command '%s'\n", argv[1]);
    return 2;
}
