# The few nixpkgs lib functions the fixture needs, as nixpkgs defines them.
{
  fix = f: let x = f x; in x;
  extends = overlay: f: final: let prev = f final; in prev // overlay final prev;
}
