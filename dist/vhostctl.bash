# bash completion for vhostctl(8): options, commands, port names (asked of the running vhostd), port types and
# their keys, log levels. Needs nothing but bash (bash-completion's helpers are not used).

_vhostctl_ports()
{
	# The socket given on the line (or $VHOSTD_SOCKET), a short timeout: completion must not hang on a
	# daemon that does not answer.
	local -a sock=()
	local i
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		-s | --socket) sock=(--socket "${COMP_WORDS[i + 1]}") ;;
		--socket=*) sock=(--socket "${COMP_WORDS[i]#--socket=}") ;;
		esac
	done
	vhostctl "${sock[@]}" --timeout 1000 --json show 2>/dev/null |
		grep -o '{"name":"[^"\\]*"' | sed 's/^{"name":"//; s/"$//'
}

# COMPREPLY from compgen ARGS, one candidate per line (file names may hold blanks).
_vhostctl_reply()
{
	mapfile -t COMPREPLY < <(compgen "$@")
}

_vhostctl_keys()
{
	case "$1" in
	vhost-user) echo "path= client queues= mrg= tso= borrow= owner= group= mode= msg_timeout_ms= mtu=" ;;
	virtio-user) echo "path= server queues= packed mrg= msg_timeout_ms= mtu=" ;;
	vhost-net) echo "ifname= queues= mtu=" ;;
	vdpa) echo "path= queues= packed mrg= mtu=" ;;
	tap) echo "ifname= queues= offloads= addr= mac= mtu=" ;;
	af_packet) echo "ifname= frames= offloads= qdisc_bypass= mtu=" ;;
	af_xdp) echo "ifname= queue= frames= mode= zerocopy= mtu=" ;;
	vxlan) echo "vni= remote= local= dstport= src_ports= gso= mtu=" ;;
	vduse) echo "name= mac= packed= tso= size= state= mtu=" ;;
	esac
}

_vhostctl()
{
	local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD - 1]}"
	local commands="add-port del-port show stats fdb log-level capture help"
	COMPREPLY=()
	case "$prev" in
	-s | --socket)
		_vhostctl_reply -f -- "$cur"
		return
		;;
	-t | --timeout) return ;;
	esac
	# Where the command is: the first word that is neither an option nor an option's argument.
	local i cmd="" cmdi=0
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		-s | --socket | -t | --timeout) ((i++)) ;;
		-*) ;;
		*)
			cmd="${COMP_WORDS[i]}"
			cmdi=$i
			break
			;;
		esac
	done
	if [[ -z "$cmd" ]]; then
		if [[ "$cur" == -* ]]; then
			_vhostctl_reply -W "-s --socket -j --json -t --timeout -h --help" -- "$cur"
		else
			_vhostctl_reply -W "$commands" -- "$cur"
		fi
		return
	fi
	local argn=$((COMP_CWORD - cmdi))
	case "$cmd" in
	del-port | stats)
		((argn == 1)) && _vhostctl_reply -W "$(_vhostctl_ports)" -- "$cur"
		;;
	capture)
		case "$prev" in
		--direction) _vhostctl_reply -W "rx tx both" -- "$cur" ;;
		-w) _vhostctl_reply -f -- "$cur" ;;
		--count) ;;
		*)
			if ((argn == 1)); then
				_vhostctl_reply -W "$(_vhostctl_ports)" -- "$cur"
			else
				_vhostctl_reply -W "--direction --count -w" -- "$cur"
			fi
			;;
		esac
		;;
	log-level)
		((argn == 1)) && _vhostctl_reply -W "error warning info debug" -- "$cur"
		;;
	help)
		((argn == 1)) && _vhostctl_reply -W "$commands" -- "$cur"
		;;
	add-port)
		if ((argn == 2)); then
			_vhostctl_reply -W "vhost-user virtio-user vhost-net vdpa tap af_packet af_xdp vxlan vduse" -- "$cur"
		elif ((argn > 2)); then
			local type="${COMP_WORDS[cmdi + 2]}"
			case "$cur" in
			mrg=* | tso=* | borrow=* | offloads=* | qdisc_bypass=* | packed=*)
				_vhostctl_reply -W "${cur%%=*}=on ${cur%%=*}=off" -- "$cur"
				;;
			path=*)
				_vhostctl_reply -f -P path= -- "${cur#path=}"
				;;
			zerocopy=*)
				_vhostctl_reply -W "zerocopy=auto zerocopy=on zerocopy=off" -- "$cur"
				;;
			mode=*)
				# af_xdp's XDP mode; vhost-user's mode= is a number (the socket's permissions).
				[[ $type == af_xdp ]] && _vhostctl_reply -W "mode=auto mode=native mode=generic" -- "$cur"
				;;
			owner=*)
				_vhostctl_reply -u -P owner= -- "${cur#owner=}"
				;;
			group=*)
				_vhostctl_reply -g -P group= -- "${cur#group=}"
				;;
			*)
				_vhostctl_reply -W "$(_vhostctl_keys "$type")" -- "$cur"
				# KEY= waits for its value: no space after it.
				[[ ${#COMPREPLY[@]} -eq 1 && "${COMPREPLY[0]}" == *= ]] && compopt -o nospace 2>/dev/null
				;;
			esac
		fi
		;;
	esac
}

complete -F _vhostctl vhostctl
