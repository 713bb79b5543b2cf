/*
 * shim_net.c — sandbox networking over rtnetlink (libmnl) and nftables (libnftables).
 *
 * Everything here runs in the calling process (no `ip` or `nft` processes): a sandbox's link is
 * a handful of netlink messages, a firewall change is one libnftables transaction.
 *
 * "The host" is a network namespace given as an fd (or the caller's own, -1). Work in another
 * namespace runs on a short-lived thread that setns()es into it, so no thread of the caller ever
 * changes namespace. Threads block every signal: they run C only and never reach Swift.
 */
#define _GNU_SOURCE
#include "shim_internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * Running a function in a network namespace.
 * ------------------------------------------------------------------------------------------- */

struct ns_call {
    int ns_fd;
    int private_files;
    int (*fn)(void *arg, atoll_error *e);
    void *arg;
    atoll_error *err;
    int rc;
};

static void *ns_thread(void *p) {
    struct ns_call *c = p;
    /* A descriptor table of the thread's own, emptied but for 0-2 once the namespace is
     * joined: whatever fn opens gets the lowest numbers however many descriptors the process
     * holds. libnftables waits on its netlink socket with select(2), whose fd_set aborts the
     * process for a descriptor of 1024 or more. */
    if (c->private_files && unshare(CLONE_FILES) < 0) {
        c->rc = atoll_fail(c->err, errno, "unshare(CLONE_FILES)", "network worker");
        return NULL;
    }
    if (c->ns_fd >= 0 && setns(c->ns_fd, CLONE_NEWNET) < 0) {
        c->rc = atoll_fail(c->err, errno, "setns(net)", "host network namespace");
        return NULL;
    }
    if (c->private_files) syscall(SYS_close_range, 3, ~0U, 0);
    c->rc = c->fn(c->arg, c->err);
    return NULL;
}

/*
 * Runs fn in the network namespace `ns_fd` (-1: the caller's). With `own_thread` (or another
 * namespace) it runs on a new thread, which may then change its own namespace freely: the
 * change ends with the thread.
 */
static int in_netns_with(int ns_fd, int own_thread, int private_files, int (*fn)(void *, atoll_error *), void *arg, atoll_error *e) {
    if (ns_fd < 0 && !own_thread && !private_files) return fn(arg, e);
    struct ns_call call = {.ns_fd = ns_fd, .private_files = private_files, .fn = fn, .arg = arg, .err = e, .rc = 0};
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, ns_thread, &call);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return atoll_fail(e, rc, "pthread_create", "network namespace worker");
    pthread_join(thread, NULL);
    return call.rc;
}

static int in_netns(int ns_fd, int own_thread, int (*fn)(void *, atoll_error *), void *arg, atoll_error *e) {
    return in_netns_with(ns_fd, own_thread, 0, fn, arg, e);
}

/* ---------------------------------------------------------------------------------------------
 * rtnetlink
 * ------------------------------------------------------------------------------------------- */

struct nl {
    struct mnl_socket *sock;
    unsigned int portid;
    unsigned int seq;
};

static int nl_open(struct nl *nl, const char *where, atoll_error *e) {
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl->sock) return atoll_fail(e, errno, "socket(NETLINK_ROUTE)", where);
    if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = errno;
        mnl_socket_close(nl->sock);
        nl->sock = NULL;
        return atoll_fail(e, err, "bind(NETLINK_ROUTE)", where);
    }
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = 1;
    return 0;
}

static void nl_close(struct nl *nl) {
    if (nl->sock) mnl_socket_close(nl->sock);
    nl->sock = NULL;
}

/*
 * Sends one request and reads replies until the kernel's ACK (or the end of a dump). `cb` sees
 * every data message. Returns 0 or -errno with `what` and `object` naming the failure.
 */
static int nl_talk(struct nl *nl, struct nlmsghdr *h, mnl_cb_t cb, void *data, const char *what, const char *object, atoll_error *e) {
    h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    h->nlmsg_seq = nl->seq++;
    if (mnl_socket_sendto(nl->sock, h, h->nlmsg_len) < 0) return atoll_fail(e, errno, what, object);
    char buf[MNL_SOCKET_BUFFER_SIZE];
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl->sock, buf, sizeof buf);
        if (n < 0) return atoll_fail(e, errno, what, object);
        int rc = mnl_cb_run(buf, (size_t)n, h->nlmsg_seq, nl->portid, cb, data);
        if (rc == MNL_CB_ERROR) return atoll_fail(e, errno, what, object);
        if (rc == MNL_CB_STOP) return 0;
    }
}

static struct nlmsghdr *nl_link_msg(char *buf, uint16_t type, uint16_t flags, int index, unsigned int up) {
    struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
    h->nlmsg_type = type;
    h->nlmsg_flags = flags;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    if (up) {
        ifi->ifi_flags = IFF_UP;
        ifi->ifi_change = IFF_UP;
    }
    return h;
}

struct link_info {
    int index;
    int master;
    char kind[32];
};

static int link_attr_cb(const struct nlattr *a, void *data) {
    struct link_info *info = data;
    switch (mnl_attr_get_type(a)) {
    case IFLA_MASTER:
        if (mnl_attr_validate(a, MNL_TYPE_U32) >= 0) info->master = (int)mnl_attr_get_u32(a);
        break;
    case IFLA_LINKINFO: {
        const struct nlattr *inner;
        mnl_attr_for_each_nested(inner, a) {
            if (mnl_attr_get_type(inner) == IFLA_INFO_KIND && mnl_attr_validate(inner, MNL_TYPE_STRING) >= 0) {
                atoll_strlcpy(info->kind, mnl_attr_get_str(inner), sizeof info->kind);
            }
        }
        break;
    }
    }
    return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *h, void *data) {
    struct link_info *info = data;
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(h);
    info->index = ifi->ifi_index;
    return mnl_attr_parse(h, sizeof *ifi, link_attr_cb, info);
}

/* Looks a link up by name. Returns 0 (found), or -ENODEV when there is none. */
static int nl_link_get(struct nl *nl, const char *name, struct link_info *info, atoll_error *e) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    memset(info, 0, sizeof *info);
    struct nlmsghdr *h = nl_link_msg(buf, RTM_GETLINK, 0, 0, 0);
    mnl_attr_put_strz(h, IFLA_IFNAME, name);
    return nl_talk(nl, h, link_cb, info, "rtnetlink(RTM_GETLINK)", name, e);
}

static int nl_link_up(struct nl *nl, int index, int master, const char *name, atoll_error *e) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *h = nl_link_msg(buf, RTM_NEWLINK, 0, index, 1);
    if (master > 0) mnl_attr_put_u32(h, IFLA_MASTER, (uint32_t)master);
    return nl_talk(nl, h, NULL, NULL, master > 0 ? "rtnetlink(RTM_NEWLINK master, up)" : "rtnetlink(RTM_NEWLINK up)", name, e);
}

/* Deletes a link by name; a missing one is fine. */
static int nl_link_delete(struct nl *nl, const char *name, atoll_error *e) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *h = nl_link_msg(buf, RTM_DELLINK, 0, 0, 0);
    mnl_attr_put_strz(h, IFLA_IFNAME, name);
    int rc = nl_talk(nl, h, NULL, NULL, "rtnetlink(RTM_DELLINK)", name, e);
    if (rc == -ENODEV) {
        memset(e, 0, sizeof *e);
        return 1;
    }
    return rc;
}

static int nl_addr_add(struct nl *nl, int index, uint32_t address, uint8_t prefix, const char *name, atoll_error *e) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
    h->nlmsg_type = RTM_NEWADDR;
    h->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof *ifa);
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = prefix;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (uint32_t)index;
    uint32_t be = htonl(address);
    mnl_attr_put_u32(h, IFA_LOCAL, be);
    mnl_attr_put_u32(h, IFA_ADDRESS, be);
    return nl_talk(nl, h, NULL, NULL, "rtnetlink(RTM_NEWADDR)", name, e);
}

/* A route in the main table: to `dst`/`dst_len` over `index`, through `gateway` (0 = on link). */
static int nl_route_add(struct nl *nl, int index, uint32_t dst, uint8_t dst_len, uint32_t gateway, const char *what, atoll_error *e) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
    h->nlmsg_type = RTM_NEWROUTE;
    h->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(h, sizeof *rtm);
    rtm->rtm_family = AF_INET;
    rtm->rtm_dst_len = dst_len;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_scope = gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rtm->rtm_type = RTN_UNICAST;
    if (dst_len) mnl_attr_put_u32(h, RTA_DST, htonl(dst));
    if (gateway) mnl_attr_put_u32(h, RTA_GATEWAY, htonl(gateway));
    mnl_attr_put_u32(h, RTA_OIF, (uint32_t)index);
    return nl_talk(nl, h, NULL, NULL, "rtnetlink(RTM_NEWROUTE)", what, e);
}

/* Writes a sysctl of the calling thread's network namespace; a missing one (no IPv6) is fine. */
static int write_sysctl(const char *path, const char *value, int optional, atoll_error *e) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        if (optional && errno == ENOENT) return 0;
        return atoll_fail(e, errno, "open", path);
    }
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int err = errno;
    close(fd);
    if (n != (ssize_t)len) return atoll_fail(e, n < 0 ? err : EIO, "write", path);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The bridge
 * ------------------------------------------------------------------------------------------- */

struct bridge_job {
    const char *name;
    uint32_t gateway;
    uint8_t prefix;
};

static int bridge_body(void *arg, atoll_error *e) {
    struct bridge_job *j = arg;
    struct nl nl;
    int rc = nl_open(&nl, j->name, e);
    if (rc < 0) return rc;
    struct link_info info;
    rc = nl_link_get(&nl, j->name, &info, e);
    if (rc == -ENODEV) {
        memset(e, 0, sizeof *e);
        char buf[MNL_SOCKET_BUFFER_SIZE];
        struct nlmsghdr *h = nl_link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, 0);
        mnl_attr_put_strz(h, IFLA_IFNAME, j->name);
        /* A fixed (random, locally administered) address: without one the bridge takes the
         * lowest address of its ports, so the sandboxes' gateway MAC would change as ports come
         * and go, breaking their ARP caches. */
        unsigned char mac[6];
        if (getrandom(mac, sizeof mac, 0) != (ssize_t)sizeof mac) {
            nl_close(&nl);
            return atoll_fail(e, errno, "getrandom", "bridge MAC address");
        }
        mac[0] = (unsigned char)((mac[0] & 0xfe) | 0x02);
        mnl_attr_put(h, IFLA_ADDRESS, sizeof mac, mac);
        struct nlattr *linkinfo = mnl_attr_nest_start(h, IFLA_LINKINFO);
        mnl_attr_put_strz(h, IFLA_INFO_KIND, "bridge");
        mnl_attr_nest_end(h, linkinfo);
        rc = nl_talk(&nl, h, NULL, NULL, "rtnetlink(RTM_NEWLINK bridge)", j->name, e);
        if (rc == 0) rc = nl_link_get(&nl, j->name, &info, e);
    } else if (rc == 0 && strcmp(info.kind, "bridge") != 0) {
        char what[96];
        snprintf(what, sizeof what, "%s: a link of that name exists and is not a bridge", j->name);
        rc = atoll_fail(e, EEXIST, "bridge", what);
    }
    if (rc == 0) rc = nl_addr_add(&nl, info.index, j->gateway, j->prefix, j->name, e);
    if (rc == 0) rc = nl_link_up(&nl, info.index, 0, j->name, e);
    nl_close(&nl);
    return rc;
}

int atoll_net_bridge_ensure(int host_ns_fd, const char *bridge, uint32_t gateway, uint8_t prefix, atoll_error *err) {
    struct bridge_job job = {.name = bridge, .gateway = gateway, .prefix = prefix};
    return in_netns(host_ns_fd, 0, bridge_body, &job, err);
}

/* ---------------------------------------------------------------------------------------------
 * A sandbox's network namespace and link
 * ------------------------------------------------------------------------------------------- */

struct sandbox_job {
    const atoll_sandbox_link *link;
    int netns_fd;
};

/* Bridge port flag: isolated ports never exchange frames (a kernel-level backstop to the
 * firewall's sandbox↔sandbox rule). */
static int nl_port_isolate(struct nl *nl, int index, const char *name, atoll_error *e) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
    h->nlmsg_type = RTM_SETLINK;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof *ifi);
    ifi->ifi_family = AF_BRIDGE;
    ifi->ifi_index = index;
    struct nlattr *prot = mnl_attr_nest_start(h, IFLA_PROTINFO);
    mnl_attr_put_u8(h, IFLA_BRPORT_ISOLATED, 1);
    mnl_attr_nest_end(h, prot);
    return nl_talk(nl, h, NULL, NULL, "rtnetlink(RTM_SETLINK bridge port isolated)", name, e);
}

static int sandbox_body(void *arg, atoll_error *e) {
    struct sandbox_job *j = arg;
    const atoll_sandbox_link *l = j->link;
    struct nl host = {0}, sb = {0};
    struct link_info bridge, port, peer;
    int nsfd = -1, created = 0;
    char buf[MNL_SOCKET_BUFFER_SIZE];

    int rc = nl_open(&host, l->host_name, e);
    if (rc == 0) rc = nl_link_get(&host, l->bridge, &bridge, e);
    /* A link of this name is a leftover of the sandbox's previous run (its namespace may still
     * be on its way out): the name is the sandbox's, so it goes. */
    if (rc == 0 && (rc = nl_link_delete(&host, l->host_name, e)) > 0) rc = 0;
    if (rc < 0) goto out;

    /* This thread moves into a new namespace; the host socket stays in the host's. */
    if (unshare(CLONE_NEWNET) < 0) {
        rc = atoll_fail(e, errno, "unshare(CLONE_NEWNET)", l->host_name);
        goto out;
    }
    /* IPv4 only: the firewall has no IPv6 rules, so the sandbox gets no IPv6 at all. */
    if ((rc = write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1", 1, e)) < 0) goto out;
    if ((rc = write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1", 1, e)) < 0) goto out;
    /* The host forwards sandbox-to-sandbox packets back out of the bridge, so Linux would send
     * an ICMP redirect ("the other sandbox is on link") before the firewall rejects the packet;
     * obeying it, the sandbox would then try to reach the other one directly, which the bridge
     * drops silently. Sandboxes ignore redirects (the host's firewall also drops them). */
    if ((rc = write_sysctl("/proc/sys/net/ipv4/conf/all/accept_redirects", "0", 0, e)) < 0) goto out;
    if ((rc = write_sysctl("/proc/sys/net/ipv4/conf/default/accept_redirects", "0", 0, e)) < 0) goto out;
    nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
        rc = atoll_fail(e, errno, "open", "/proc/thread-self/ns/net");
        goto out;
    }
    if ((rc = nl_open(&sb, l->peer_name, e)) < 0) goto out;

    struct nlmsghdr *h = nl_link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, 0);
    mnl_attr_put_strz(h, IFLA_IFNAME, l->host_name);
    struct nlattr *linkinfo = mnl_attr_nest_start(h, IFLA_LINKINFO);
    mnl_attr_put_strz(h, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(h, IFLA_INFO_DATA);
    struct nlattr *peer_attr = mnl_attr_nest_start(h, VETH_INFO_PEER);
    struct ifinfomsg *peer_ifi = mnl_nlmsg_put_extra_header(h, sizeof(struct ifinfomsg));
    peer_ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(h, IFLA_IFNAME, l->peer_name);
    mnl_attr_put_u32(h, IFLA_NET_NS_FD, (uint32_t)nsfd);
    mnl_attr_nest_end(h, peer_attr);
    mnl_attr_nest_end(h, data);
    mnl_attr_nest_end(h, linkinfo);
    if ((rc = nl_talk(&host, h, NULL, NULL, "rtnetlink(RTM_NEWLINK veth)", l->host_name, e)) < 0) goto out;
    created = 1;

    if ((rc = nl_link_get(&host, l->host_name, &port, e)) < 0) goto out;
    if ((rc = nl_link_up(&host, port.index, bridge.index, l->host_name, e)) < 0) goto out;
    if ((rc = nl_port_isolate(&host, port.index, l->host_name, e)) < 0) goto out;

    /* Inside: loopback, the address as a /32 and every route through the gateway. With no
     * on-link subnet, traffic to another sandbox is routed through the host (where the firewall
     * rejects it at once) instead of being bridged (where it could only be dropped silently). */
    struct link_info lo;
    if ((rc = nl_link_get(&sb, "lo", &lo, e)) < 0) goto out;
    if ((rc = nl_link_up(&sb, lo.index, 0, "lo", e)) < 0) goto out;
    if ((rc = nl_link_get(&sb, l->peer_name, &peer, e)) < 0) goto out;
    if ((rc = nl_addr_add(&sb, peer.index, l->address, 32, l->peer_name, e)) < 0) goto out;
    if ((rc = nl_link_up(&sb, peer.index, 0, l->peer_name, e)) < 0) goto out;
    if ((rc = nl_route_add(&sb, peer.index, l->gateway, 32, 0, "gateway route", e)) < 0) goto out;
    if ((rc = nl_route_add(&sb, peer.index, 0, 0, l->gateway, "default route", e)) < 0) goto out;

out:
    if (rc < 0) {
        if (created) {
            atoll_error ignored;
            nl_link_delete(&host, l->host_name, &ignored);
        }
        if (nsfd >= 0) close(nsfd);
        nsfd = -1;
    }
    nl_close(&sb);
    nl_close(&host);
    j->netns_fd = nsfd;
    return rc < 0 ? rc : 0;
}

int atoll_net_sandbox_create(int host_ns_fd, const atoll_sandbox_link *link, int *netns_fd_out, atoll_error *err) {
    struct sandbox_job job = {.link = link, .netns_fd = -1};
    int rc = in_netns(host_ns_fd, 1, sandbox_body, &job, err);
    if (rc < 0) return rc;
    *netns_fd_out = job.netns_fd;
    return 0;
}

struct delete_job {
    const char *name;
};

static int delete_body(void *arg, atoll_error *e) {
    struct delete_job *j = arg;
    struct nl nl;
    int rc = nl_open(&nl, j->name, e);
    if (rc < 0) return rc;
    rc = nl_link_delete(&nl, j->name, e);
    nl_close(&nl);
    return rc;
}

int atoll_net_link_delete(int host_ns_fd, const char *name, atoll_error *err) {
    struct delete_job job = {.name = name};
    return in_netns(host_ns_fd, 0, delete_body, &job, err);
}

struct ports_job {
    const char *bridge;
    int bridge_index;
    char *names;
    size_t cap, used;
    int count;
};

static int port_attr_cb(const struct nlattr *a, void *data) {
    const struct nlattr **tb = data;
    int type = mnl_attr_get_type(a);
    if (type == IFLA_IFNAME || type == IFLA_MASTER) tb[type] = a;
    return MNL_CB_OK;
}

static int ports_cb(const struct nlmsghdr *h, void *data) {
    struct ports_job *j = data;
    const struct nlattr *tb[IFLA_MAX + 1] = {0};
    mnl_attr_parse(h, sizeof(struct ifinfomsg), port_attr_cb, tb);
    if (!tb[IFLA_MASTER] || !tb[IFLA_IFNAME]) return MNL_CB_OK;
    if ((int)mnl_attr_get_u32(tb[IFLA_MASTER]) != j->bridge_index) return MNL_CB_OK;
    const char *name = mnl_attr_get_str(tb[IFLA_IFNAME]);
    size_t len = strnlen(name, IFNAMSIZ);
    if (j->used + len + 1 < j->cap) {
        memcpy(j->names + j->used, name, len);
        j->used += len;
        j->names[j->used++] = '\n';
        j->names[j->used] = 0;
        j->count++;
    }
    return MNL_CB_OK;
}

static int ports_body(void *arg, atoll_error *e) {
    struct ports_job *j = arg;
    struct nl nl;
    int rc = nl_open(&nl, j->bridge, e);
    if (rc < 0) return rc;
    struct link_info bridge;
    rc = nl_link_get(&nl, j->bridge, &bridge, e);
    if (rc == -ENODEV) {
        memset(e, 0, sizeof *e);
        nl_close(&nl);
        return 0;
    }
    if (rc == 0) {
        j->bridge_index = bridge.index;
        char buf[MNL_SOCKET_BUFFER_SIZE];
        struct nlmsghdr *h = nl_link_msg(buf, RTM_GETLINK, NLM_F_DUMP, 0, 0);
        rc = nl_talk(&nl, h, ports_cb, j, "rtnetlink(RTM_GETLINK dump)", j->bridge, e);
    }
    nl_close(&nl);
    return rc;
}

int atoll_net_bridge_ports(int host_ns_fd, const char *bridge, char *names, size_t cap, atoll_error *err) {
    if (cap == 0) return atoll_fail(err, EINVAL, "bridge ports (no buffer)", bridge);
    names[0] = 0;
    struct ports_job job = {.bridge = bridge, .names = names, .cap = cap};
    int rc = in_netns(host_ns_fd, 0, ports_body, &job, err);
    return rc < 0 ? rc : job.count;
}

struct sysctl_job {
    const char *path;
    const char *value;
    char *old;
    size_t oldcap;
};

static int sysctl_body(void *arg, atoll_error *e) {
    struct sysctl_job *j = arg;
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return atoll_fail(e, errno, "open", j->path);
    ssize_t n = read(fd, j->old, j->oldcap - 1);
    int err = errno;
    close(fd);
    if (n < 0) return atoll_fail(e, err, "read", j->path);
    j->old[n] = 0;
    while (n > 0 && (j->old[n - 1] == '\n' || j->old[n - 1] == ' ')) j->old[--n] = 0;
    if (!j->value || strcmp(j->old, j->value) == 0) return 0;
    return write_sysctl(j->path, j->value, 0, e);
}

int atoll_net_sysctl(int host_ns_fd, const char *path, const char *value, char *old, size_t oldcap, atoll_error *err) {
    if (oldcap < 2) return atoll_fail(err, EINVAL, "sysctl (buffer too small)", path);
    struct sysctl_job job = {.path = path, .value = value, .old = old, .oldcap = oldcap};
    return in_netns(host_ns_fd, 0, sysctl_body, &job, err);
}

/* ---------------------------------------------------------------------------------------------
 * nftables
 * ------------------------------------------------------------------------------------------- */

/* libnftables keeps per-context state only, but its parser and caches have not always been
 * thread-safe: one transaction at a time per process. */
static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;

struct nft_job {
    const char *commands;
    char *output;
    char *errors;
};

static char *copy_or_null(const char *s) {
    return s && *s ? strdup(s) : NULL;
}

static int nft_body(void *arg, atoll_error *e) {
    struct nft_job *j = arg;
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx) return atoll_fail(e, ENOMEM, "nft_ctx_new", "");
    nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_NUMERIC_ALL);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    int rc = nft_run_cmd_from_buffer(ctx, j->commands);
    j->output = copy_or_null(nft_ctx_get_output_buffer(ctx));
    j->errors = copy_or_null(nft_ctx_get_error_buffer(ctx));
    nft_ctx_free(ctx);
    if (rc != 0) return atoll_fail(e, EINVAL, "nft_run_cmd_from_buffer", "see the nftables message");
    return 0;
}

int atoll_nft_run(int host_ns_fd, const char *commands, char **output, char **errors, atoll_error *err) {
    struct nft_job job = {.commands = commands};
    pthread_mutex_lock(&nft_lock);
    /* Results come back in memory (buffered output), so the worker's private, emptied
     * descriptor table costs nothing; see ns_thread. */
    int rc = in_netns_with(host_ns_fd, 1, 1, nft_body, &job, err);
    pthread_mutex_unlock(&nft_lock);
    *output = job.output;
    *errors = job.errors;
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Empty namespaces (test harnesses: a namespace to play the host or the outside world)
 * ------------------------------------------------------------------------------------------- */

struct empty_job {
    int fd;
};

static int empty_body(void *arg, atoll_error *e) {
    struct empty_job *j = arg;
    if (unshare(CLONE_NEWNET) < 0) return atoll_fail(e, errno, "unshare(CLONE_NEWNET)", "");
    struct nl nl;
    struct link_info lo;
    int rc = nl_open(&nl, "lo", e);
    if (rc < 0) return rc;
    rc = nl_link_get(&nl, "lo", &lo, e);
    if (rc == 0) rc = nl_link_up(&nl, lo.index, 0, "lo", e);
    nl_close(&nl);
    if (rc < 0) return rc;
    j->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (j->fd < 0) return atoll_fail(e, errno, "open", "/proc/thread-self/ns/net");
    return 0;
}

int atoll_net_namespace_create(int *fd_out, atoll_error *err) {
    struct empty_job job = {.fd = -1};
    int rc = in_netns(-1, 1, empty_body, &job, err);
    if (rc < 0) return rc;
    *fd_out = job.fd;
    return 0;
}

struct socket_job {
    int domain, type, protocol;
    int fd;
};

static int socket_body(void *arg, atoll_error *e) {
    struct socket_job *j = arg;
    j->fd = socket(j->domain, j->type | SOCK_CLOEXEC, j->protocol);
    if (j->fd < 0) return atoll_fail(e, errno, "socket", "in network namespace");
    return 0;
}

int atoll_net_socket(int ns_fd, int domain, int type, int protocol, atoll_error *err) {
    struct socket_job job = {.domain = domain, .type = type, .protocol = protocol, .fd = -1};
    int rc = in_netns(ns_fd, 0, socket_body, &job, err);
    return rc < 0 ? rc : job.fd;
}
