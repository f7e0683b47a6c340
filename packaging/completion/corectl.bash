# bash completion for corectl(1): verbs, each verb's options, and record ids, executables,
# command names and hosts from the store.
#
# Values from the store come from crashed processes (a container chooses its hostname): they are
# never given to `compgen -W`, which would expand $(...) in them, and are quoted with printf %q.

_corectl_store_values() { # ids|exes|comms|hosts
  local -a cfg=()
  local i
  for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
    case ${COMP_WORDS[i]} in
    --store | --config | --remote) cfg+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
    esac
  done
  corectl "${cfg[@]}" list --no-pager --list-values="$1" 2>/dev/null
}

# Adds the lines of stdin that start with $cur, quoted for the command line.
_corectl_add_matching() {
  local v
  while IFS= read -r v; do
    [[ $v == "$cur"* ]] && COMPREPLY+=("$(printf '%q' "$v")")
  done
}

_corectl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local verbs="list info dump debug groups resolve unresolve vacuum remove install uninstall"
  local global="--store --config --remote --color --no-pager --quiet --help --version"
  local filters="--host --exe --signal --since --until"
  local output="--limit -1 --reverse --json --no-legend"
  COMPREPLY=()

  # "--json=pr": bash splits at '=', so the option is two words back.
  if [[ $cur == = ]]; then
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    cur=
  elif [[ $prev == = ]]; then
    prev=${COMP_WORDS[COMP_CWORD - 2]}
  fi

  case $prev in
  --store | --sysctl-dir | --state-dir)
    mapfile -t COMPREPLY < <(compgen -d -- "$cur")
    return
    ;;
  --config | -o | --output | --handler | --file)
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    return
    ;;
  --remote)
    mapfile -t COMPREPLY < <(compgen -W "s3://" -- "$cur")
    compopt -o nospace 2>/dev/null
    return
    ;;
  --color | --colour)
    mapfile -t COMPREPLY < <(compgen -W "auto always never" -- "$cur")
    return
    ;;
  --json)
    mapfile -t COMPREPLY < <(compgen -W "short pretty off" -- "$cur")
    return
    ;;
  -F | --field)
    mapfile -t COMPREPLY < <(compgen -W "COREDUMP_PID COREDUMP_UID COREDUMP_GID COREDUMP_SIGNAL COREDUMP_SIGNAL_NAME COREDUMP_EXE COREDUMP_COMM COREDUMP_CMDLINE COREDUMP_HOSTNAME COREDUMP_RLIMIT COREDUMP_UNIT COREDUMP_TIMESTAMP COREDUMP_FILENAME id time hostname executable signal_name crash.signature core.reason container.unit" -- "$cur")
    return
    ;;
  --signal)
    mapfile -t COMPREPLY < <(compgen -W "SEGV ABRT BUS FPE ILL TRAP SYS QUIT XCPU XFSZ" -- "$cur")
    return
    ;;
  --host)
    _corectl_add_matching < <(_corectl_store_values hosts)
    return
    ;;
  --exe)
    _corectl_add_matching < <(_corectl_store_values exes)
    return
    ;;
  -S | --since | -U | --until | -n | --limit | --debugger | -A | --debugger-arguments | --in)
    return # free text
    ;;
  esac

  local verb= i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
    list | info | dump | debug | groups | resolve | unresolve | vacuum | remove | install | uninstall)
      verb=${COMP_WORDS[i]}
      break
      ;;
    esac
  done

  local opts
  case $verb in
  "") opts="$global" ;;
  list) opts="$global $filters $output --field" ;;
  groups) opts="$global $filters $output" ;;
  info) opts="$global $filters $output --file" ;;
  dump) opts="$global $filters --output --file" ;;
  debug) opts="$global $filters --debugger --debugger-arguments --debuginfod --file" ;;
  resolve) opts="$global --in" ;;
  unresolve) opts="$global" ;;
  vacuum) opts="$global --dry-run" ;;
  remove) opts="$global $filters" ;;
  install | uninstall) opts="$global --handler --sysctl-dir --state-dir" ;;
  esac

  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
  elif [[ -z $verb ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$verbs" -- "$cur")
  else
    case $verb in
    list | groups | info | dump | debug | remove)
      # Matches: record ids, then executables and command names; FIELD= on request.
      if [[ $cur == [A-Z]* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "ID= PID= UID= COMM= EXE= HOST= SIGNAL= SIGNATURE= UNIT= COREDUMP_UNIT=" -- "$cur")
        compopt -o nospace 2>/dev/null
      elif [[ $cur == /* ]]; then
        _corectl_add_matching < <(_corectl_store_values exes)
      else
        _corectl_add_matching < <(_corectl_store_values ids)
        _corectl_add_matching < <(_corectl_store_values comms)
      fi
      ;;
    resolve | unresolve)
      _corectl_add_matching < <(_corectl_store_values signatures)
      ;;
    esac
  fi
}

complete -F _corectl corectl
