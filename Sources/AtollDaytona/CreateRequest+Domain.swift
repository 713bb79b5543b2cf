public import AtollCore
public import AtollRuntime
public import AtollWire
import Foundation

/// What a Daytona create request asks the runner for: a sandbox from a snapshot, one built from a
/// Dockerfile first, or (for a build Atoll cannot do: a build context) a sandbox recorded as
/// `build_failed` with the reason, as Daytona records a build that cannot pull its base image.
public enum CreateIntent: Sendable {
    case sandbox(CreateParameters)
    case failedBuild(CreateParameters, reason: String)
    /// A sandbox whose root is built from a Dockerfile first (Daytona's `buildInfo`).
    case build(CreateParameters, dockerfile: String)
}

extension CreateSandboxRequest {
    /// The one translation of Daytona's create body into runner parameters, used by atolld and
    /// by both CLI backends. Defaults are the runner's (`Resources.defaults`,
    /// `LifecycleIntervals.defaults`), never restated here; the network fields are read by
    /// `NetworkPolicy.requested`. Fields Atoll cannot honour are refused by name.
    public func intent(organizationId: String?) throws(AtollError) -> CreateIntent {
        if let gpu, gpu > 0 { throw AtollError(.invalidArgument, "gpu: this host has no GPUs to give (got \(gpu))") }
        if let autoPauseInterval, autoPauseInterval > 0, autoDeleteInterval == 0 {
            throw AtollError(.invalidArgument, "autoPauseInterval: an ephemeral sandbox (autoDeleteInterval 0) cannot be paused; set one of them to 0")
        }
        if let volumes, !volumes.isEmpty {
            throw AtollError(.invalidArgument, "volumes are not supported by Atoll (\(volumes.count) given)")
        }
        try refuseUnsupportedRestrictions()
        var resources = Resources.defaults
        if let cpu { resources.cpu = cpu }
        if let memory { resources.memoryGiB = memory }
        if let disk { resources.diskGiB = disk }
        var intervals = LifecycleIntervals.defaults
        if let autoStopInterval { intervals.autoStop = autoStopInterval }
        if let autoArchiveInterval { intervals.autoArchive = autoArchiveInterval }
        if let autoDeleteInterval { intervals.autoDelete = autoDeleteInterval }
        let network = try NetworkPolicy.requested(blockAll: networkBlockAll, allowList: networkAllowList)
        var parameters = CreateParameters(
            name: name, labels: labels ?? [:], env: env ?? [:], user: user, resources: resources, snapshot: snapshot,
            intervals: intervals, network: network, organizationId: organizationId)
        parameters.isPublic = self.public ?? false
        parameters.autoPause = autoPauseInterval ?? 0
        parameters.ttlMinutes = ttlMinutes ?? 0
        guard let dockerfile = buildInfo?.dockerfileContent else { return .sandbox(parameters) }
        parameters.snapshot = nil
        if let hashes = buildInfo?.contextHashes, !hashes.isEmpty {
            let image = Self.baseImage(dockerfile) ?? "(no FROM line)"
            return .failedBuild(
                parameters,
                reason:
                    "cannot build from image \(image): the image has local files (a build context), which need object storage Atoll does not serve yet")
        }
        return .build(parameters, dockerfile: dockerfile)
    }

    /// A field that narrows what a sandbox may do, or that its creator relies on, and that Atoll
    /// cannot honour is refused with the field's name — never dropped, which would hand out a
    /// sandbox with fewer restrictions than were asked for (an open network instead of a domain
    /// allow list, say).
    func refuseUnsupportedRestrictions() throws(AtollError) {
        if let domainAllowList, !domainAllowList.trimmingCharacters(in: .whitespaces).isEmpty {
            throw AtollError(
                .invalidArgument, "domainAllowList is not supported by Atoll: it filters by IPv4 network only (networkAllowList); the sandbox was not created")
        }
        if let outboundProxyUrl, !outboundProxyUrl.trimmingCharacters(in: .whitespaces).isEmpty {
            throw AtollError(.invalidArgument, "outboundProxyUrl is not supported by Atoll; the sandbox was not created")
        }
        // "local" is the one target Atoll reports (SandboxDTO.target).
        if let target, !["", "local"].contains(target.trimmingCharacters(in: .whitespaces)) {
            throw AtollError(
                .invalidArgument, "target \"\(target.prefix(64))\" is not supported by Atoll: it runs sandboxes on this host only; the sandbox was not created")
        }
        if kvm == true {
            throw AtollError(.invalidArgument, "kvm is not supported by Atoll: sandboxes get no /dev/kvm; the sandbox was not created")
        }
        if let gpuType, !gpuType.trimmingCharacters(in: .whitespaces).isEmpty {
            throw AtollError(.invalidArgument, "gpuType: this host has no GPUs to give; the sandbox was not created")
        }
        if let secrets, !secrets.isEmpty {
            throw AtollError(.invalidArgument, "secrets are not supported by Atoll (pass env instead); the sandbox was not created")
        }
    }

    /// The image of the first `FROM` line of a Dockerfile.
    public static func baseImage(_ dockerfile: String) -> String? {
        for line in dockerfile.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            if words.first?.uppercased() == "FROM", words.count >= 2 {
                return words.dropFirst().first { !$0.hasPrefix("--") }.map(String.init)
            }
        }
        return nil
    }
}

extension SandboxManager {
    /// Carries out a Daytona create request: the path atolld and the embedded CLI share.
    public func create(_ request: CreateSandboxRequest, organizationId: String?) async throws -> Sandbox {
        switch try request.intent(organizationId: organizationId) {
        case .sandbox(let parameters): return try await create(parameters)
        case .failedBuild(let parameters, let reason): return try createFailedBuild(parameters, reason: reason)
        case .build(let parameters, let dockerfile): return try createFromBuild(parameters, dockerfile: dockerfile)
        }
    }
}
