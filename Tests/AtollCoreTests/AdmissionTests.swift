import AtollCore
import Testing

@Suite("admission: host capacity and organization quotas")
struct AdmissionTests {
    let host = HostSize(cpus: 2, memoryGiB: 23, diskGiB: 80)

    func check(
        _ request: AdmissionRequest, held: Holdings = Holdings(), quota: OrganizationQuota = .unlimited,
        organizationHeld: Holdings = Holdings(), capacity: HostCapacity = .defaults
    ) throws(AtollError) {
        try Admission.check(
            request, capacity: capacity, host: host, held: held, quota: quota, organization: "acme",
            organizationHeld: organizationHeld)
    }

    @Test("the review's case: ten 4 vCPU / 8 GiB / 10 GiB sandboxes on a 2-CPU, 23 GiB host")
    func reviewCase() {
        var held = Holdings()
        var accepted = 0
        for _ in 0..<10 {
            let request = AdmissionRequest(cpu: 4, memoryGiB: 8, diskGiB: 10, newSandbox: true)
            do {
                try check(request, held: held)
                held.cpu += 4
                held.memoryGiB += 8
                held.diskGiB += 10
                accepted += 1
            } catch {
                #expect(error.code == .resourceExhausted)
                #expect(error.message.contains("memory") && error.message.contains("ATOLL_MEMORY_OVERCOMMIT"), "\(error)")
                break
            }
        }
        // 23 GiB less a reserve of 2.3 GiB holds two 8 GiB sandboxes, not three.
        #expect(accepted == 2)
    }

    @Test("each limit names itself; 0 turns a ratio off; a warm pool claim checks only the quota")
    func limits() throws {
        #expect(throws: AtollError.self) { try check(AdmissionRequest(cpu: 1, memoryGiB: 0, diskGiB: 0, newSandbox: false), held: Holdings(cpu: 16)) }
        try check(AdmissionRequest(cpu: 1, memoryGiB: 0, diskGiB: 0, newSandbox: false), held: Holdings(cpu: 15))
        do {
            try check(AdmissionRequest(cpu: 0, memoryGiB: 0, diskGiB: 10, newSandbox: false), held: Holdings(diskGiB: 70))
            Issue.record("80 GiB of disk on an 80 GiB filesystem with a 2 GiB reserve was accepted")
        } catch {
            #expect(error.message.contains("disk") && error.message.contains("ATOLL_DISK_OVERCOMMIT"))
        }
        try check(
            AdmissionRequest(cpu: 100, memoryGiB: 100, diskGiB: 1000, newSandbox: true), held: Holdings(cpu: 100),
            capacity: .unlimited)
        // Resizes and starts ask only for their increase; zero increases always pass.
        try check(AdmissionRequest(cpu: 0, memoryGiB: 0, diskGiB: 0, newSandbox: false), held: Holdings(cpu: 99, memoryGiB: 99, diskGiB: 999))
    }

    @Test("organization quotas: vCPUs, memory, disk and sandboxes, each naming its setting")
    func quotas() {
        let quota = OrganizationQuota(maxCPU: 4, maxMemoryGiB: 8, maxDiskGiB: 20, maxSandboxes: 3)
        let cases: [(AdmissionRequest, Holdings, String)] = [
            (AdmissionRequest(cpu: 2, memoryGiB: 1, diskGiB: 1, newSandbox: false), Holdings(cpu: 3), "ATOLL_ORG_MAX_CPU"),
            (AdmissionRequest(cpu: 1, memoryGiB: 2, diskGiB: 1, newSandbox: false), Holdings(memoryGiB: 7), "ATOLL_ORG_MAX_MEMORY_GIB"),
            (AdmissionRequest(cpu: 1, memoryGiB: 1, diskGiB: 3, newSandbox: false), Holdings(diskGiB: 18), "ATOLL_ORG_MAX_DISK_GIB"),
            (AdmissionRequest(cpu: 1, memoryGiB: 1, diskGiB: 1, newSandbox: true), Holdings(sandboxes: 3), "ATOLL_ORG_MAX_SANDBOXES"),
        ]
        for (request, held, key) in cases {
            do {
                try check(request, quota: quota, organizationHeld: held)
                Issue.record("\(key) was not enforced")
            } catch {
                #expect(error.code == .quotaExceeded && error.code.httpStatus == 403)
                #expect(error.message.contains(key) && error.message.contains("acme"), "\(error)")
            }
        }
        #expect(throws: Never.self) {
            try check(
                AdmissionRequest(cpu: 1, memoryGiB: 1, diskGiB: 1, newSandbox: true), quota: quota,
                organizationHeld: Holdings(cpu: 3, memoryGiB: 7, diskGiB: 19, sandboxes: 2))
        }
    }
}
