# A closure of `n` text files for copy benchmarks: file i refers to files
# i-1 and i/2, so the last one's closure holds them all. Every tenth file
# is large (`big` bytes), the others small (1-8 KiB). `seed` makes a fresh
# set of paths.
{ n ? 2000, seed ? "0", big ? 262144 }:
let
  line = i: j: "poison copy benchmark ${seed} file ${toString i} line ${toString j} 0123456789abcdef\n";
  size = i: if i - (i / 10) * 10 == 0 then big else 1024 + (i - (i / 8) * 8) * 1024;
  body = i: builtins.concatStringsSep "" (builtins.genList (line i) (size i / 64));
  file = i:
    let refs = if i == 0 then "" else "${files (i - 1)}\n${files (i / 2)}\n";
    in builtins.toFile "copy-bench-${seed}-${toString i}" (refs + body i);
  memo = builtins.genList file n;
  files = i: builtins.elemAt memo i;
in files (n - 1)
