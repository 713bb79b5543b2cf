public import AtollCore
public import AtollRuntime
public import AtollStore
public import AtollWire
import Foundation

extension SnapshotDTO {
    /// A registered snapshot on the wire.
    public init(_ record: SnapshotRecord) {
        let iso = SandboxDTO.iso
        self.init(
            id: record.id, organizationId: record.organizationId, general: false, name: record.name, imageName: record.imageName,
            state: record.state, size: record.size.map { Double($0) / Double(1 << 30) },
            entrypoint: record.entrypoint.flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }, cpu: record.cpu,
            mem: record.memoryGiB, disk: record.diskGiB, errorReason: record.errorReason,
            createdAt: iso.string(from: Date(timeIntervalSince1970: record.createdAt)),
            updatedAt: iso.string(from: Date(timeIntervalSince1970: record.updatedAt)),
            lastUsedAt: record.lastUsedAt.map { iso.string(from: Date(timeIntervalSince1970: $0)) }, ref: record.imageName)
    }
}

extension CreateSnapshotRequest {
    /// The one translation of Daytona's snapshot create body, for atolld and the CLI.
    public func request(organizationId: String?) throws -> SnapshotRequest {
        if let gpu, gpu > 0 { throw AtollError(.invalidArgument, "gpu: this host has no GPUs to give; the snapshot was not created") }
        if let hashes = buildInfo?.contextHashes, !hashes.isEmpty {
            throw AtollError(.invalidArgument, "buildInfo.contextHashes: build contexts need object storage, which Atoll does not serve yet")
        }
        var resources: Resources?
        if cpu != nil || memory != nil || disk != nil {
            var value = Resources.defaults
            if let cpu { value.cpu = cpu }
            if let memory { value.memoryGiB = memory }
            if let disk { value.diskGiB = disk }
            resources = value
        }
        return SnapshotRequest(
            name: name, imageName: imageName, dockerfile: buildInfo?.dockerfileContent, entrypoint: entrypoint, resources: resources,
            organizationId: organizationId)
    }
}
