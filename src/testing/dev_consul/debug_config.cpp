// agent/self's DebugConfig: Consul 1.10.11's runtime configuration of `consul agent -dev`, as
// the real agent reports it, with the settings dev_consul has filled in.
#include "router.hpp"

namespace lakemesh::testing::detail {
namespace {

// Captured from `consul agent -dev` 1.10.11 (client/bind 127.0.0.1, DNS and gRPC off), with
// Consul's default ports. Values that depend on the agent are replaced below.
constexpr const char* debug_config_template =
    R"({"ACLDatacenter":"dc1","ACLDefaultPolicy":"allow","ACLDisabledTTL":"2m0s","ACLDownPolicy)"
    R"(":"extend-cache","ACLEnableKeyListPolicy":false,"ACLMasterToken":"hidden","ACLPolicyTTL")"
    R"(:"30s","ACLRoleTTL":"0s","ACLTokenReplication":false,"ACLTokenTTL":"30s","ACLTokens":{"A)"
    R"(CLAgentMasterToken":"hidden","ACLAgentToken":"hidden","ACLDefaultToken":"hidden","ACLRep)"
    R"(licationToken":"hidden","DataDir":"","EnablePersistence":false,"EnterpriseConfig":{}},"A)"
    R"(CLsEnabled":false,"AEInterval":"1m0s","AdvertiseAddrLAN":"127.0.0.1","AdvertiseAddrWAN":)"
    R"("127.0.0.1","AdvertiseReconnectTimeout":"0s","AllowWriteHTTPFrom":[],"AutoConfig":{"Auth)"
    R"(orizer":{"AllowReuse":false,"AuthMethod":{"ACLAuthMethodEnterpriseFields":{},"Config":{")"
    R"(BoundAudiences":null,"BoundIssuer":"","ClaimMappings":null,"ClockSkewLeeway":0,"Expirati)"
    R"(onLeeway":0,"JWKSCACert":"","JWKSURL":"","JWTSupportedAlgs":null,"JWTValidationPubKeys":)"
    R"(null,"ListClaimMappings":null,"NotBeforeLeeway":0,"OIDCDiscoveryCACert":"","OIDCDiscover)"
    R"(yURL":""},"Description":"","DisplayName":"","EnterpriseMeta":{},"MaxTokenTTL":"0s","Name)"
    R"(":"Auto Config Authorizer","RaftIndex":{"CreateIndex":0,"ModifyIndex":0},"TokenLocality")"
    R"(:"","Type":"jwt"},"ClaimAssertions":[],"Enabled":false},"DNSSANs":[],"Enabled":false,"IP)"
    R"(SANs":[],"IntroToken":"hidden","IntroTokenFile":"","ServerAddresses":[]},"AutoEncryptAll)"
    R"(owTLS":false,"AutoEncryptDNSSAN":[],"AutoEncryptIPSAN":[],"AutoEncryptTLS":false,"Autopi)"
    R"(lotCleanupDeadServers":true,"AutopilotDisableUpgradeMigration":false,"AutopilotLastConta)"
    R"(ctThreshold":"200ms","AutopilotMaxTrailingLogs":250,"AutopilotMinQuorum":0,"AutopilotRed)"
    R"(undancyZoneTag":"","AutopilotServerStabilizationTime":"10s","AutopilotUpgradeVersionTag")"
    R"(:"","BindAddr":"127.0.0.1","Bootstrap":false,"BootstrapExpect":0,"CAFile":"","CAPath":"")"
    R"(,"Cache":{"EntryFetchMaxBurst":2,"EntryFetchRate":1.7976931348623157e+308,"Logger":null})"
    R"(,"CertFile":"","CheckDeregisterIntervalMin":"1m0s","CheckOutputMaxSize":4096,"CheckReapI)"
    R"(nterval":"30s","CheckUpdateInterval":"5m0s","Checks":[],"ClientAddrs":["127.0.0.1"],"Con)"
    R"(figEntryBootstrap":[],"ConnectCAConfig":{},"ConnectCAProvider":"","ConnectEnabled":true,)"
    R"("ConnectMeshGatewayWANFederationEnabled":false,"ConnectSidecarMaxPort":21255,"ConnectSid)"
    R"(ecarMinPort":21000,"ConnectTestCALeafRootChangeSpread":"0s","ConsulCoordinateUpdateBatch)"
    R"(Size":128,"ConsulCoordinateUpdateMaxBatches":5,"ConsulCoordinateUpdatePeriod":"100ms","C)"
    R"(onsulRaftElectionTimeout":"52ms","ConsulRaftHeartbeatTimeout":"35ms","ConsulRaftLeaderLe)"
    R"(aseTimeout":"20ms","ConsulServerHealthInterval":"10ms","DNSARecordLimit":0,"DNSAddrs":[])"
    R"(,"DNSAllowStale":true,"DNSAltDomain":"","DNSCacheMaxAge":"0s","DNSDisableCompression":fa)"
    R"(lse,"DNSDomain":"consul.","DNSEnableTruncate":false,"DNSMaxStale":"87600h0m0s","DNSNodeM)"
    R"(etaTXT":true,"DNSNodeTTL":"0s","DNSOnlyPassing":false,"DNSPort":-1,"DNSRecursorTimeout":)"
    R"("2s","DNSRecursors":[],"DNSSOA":{"Expire":86400,"Minttl":0,"Refresh":3600,"Retry":600},")"
    R"(DNSServiceTTL":{},"DNSUDPAnswerLimit":3,"DNSUseCache":false,"DataDir":"","Datacenter":"d)"
    R"(c1","DefaultQueryTime":"5m0s","DevMode":true,"DisableAnonymousSignature":true,"DisableCo)"
    R"(ordinates":false,"DisableHTTPUnprintableCharFilter":false,"DisableHostNodeID":true,"Disa)"
    R"(bleKeyringFile":true,"DisableRemoteExec":true,"DisableUpdateCheck":false,"DiscardCheckOu)"
    R"(tput":false,"DiscoveryMaxStale":"0s","EnableAgentTLSForChecks":false,"EnableCentralServi)"
    R"(ceConfig":true,"EnableDebug":true,"EnableLocalScriptChecks":false,"EnableRemoteScriptChe)"
    R"(cks":false,"EncryptKey":"hidden","EncryptVerifyIncoming":true,"EncryptVerifyOutgoing":tr)"
    R"(ue,"EnterpriseRuntimeConfig":{},"ExposeMaxPort":21755,"ExposeMinPort":21500,"GRPCAddrs":)"
    R"([],"GRPCPort":-1,"GossipLANGossipInterval":"100ms","GossipLANGossipNodes":3,"GossipLANPr)"
    R"(obeInterval":"100ms","GossipLANProbeTimeout":"100ms","GossipLANRetransmitMult":4,"Gossip)"
    R"(LANSuspicionMult":3,"GossipWANGossipInterval":"100ms","GossipWANGossipNodes":3,"GossipWA)"
    R"(NProbeInterval":"100ms","GossipWANProbeTimeout":"100ms","GossipWANRetransmitMult":4,"Gos)"
    R"(sipWANSuspicionMult":3,"HTTPAddrs":["tcp://127.0.0.1:8500"],"HTTPBlockEndpoints":[],"HTT)"
    R"(PMaxConnsPerClient":200,"HTTPMaxHeaderBytes":0,"HTTPPort":8500,"HTTPResponseHeaders":{},)"
    R"("HTTPSAddrs":[],"HTTPSHandshakeTimeout":"5s","HTTPSPort":-1,"HTTPUseCache":true,"KVMaxVa)"
    R"(lueSize":524288,"KeyFile":"hidden","LeaveDrainTime":"5s","LeaveOnTerm":false,"Logging":{)"
    R"("EnableSyslog":false,"LogFilePath":"","LogJSON":false,"LogLevel":"DEBUG","LogRotateBytes)"
    R"(":0,"LogRotateDuration":"0s","LogRotateMaxFiles":0,"Name":"","SyslogFacility":"LOCAL0"},)"
    R"("MaxQueryTime":"10m0s","NodeID":"1d914e25-3646-163c-da3c-8d2297951c65","NodeMeta":{},"No)"
    R"(deName":"vm","PidFile":"","PrimaryDatacenter":"dc1","PrimaryGateways":[],"PrimaryGateway)"
    R"(sInterval":"30s","RPCAdvertiseAddr":"tcp://127.0.0.1:8300","RPCBindAddr":"tcp://127.0.0.)"
    R"(1:8300","RPCConfig":{"EnableStreaming":true},"RPCHandshakeTimeout":"5s","RPCHoldTimeout")"
    R"(:"7s","RPCMaxBurst":1000,"RPCMaxConnsPerClient":100,"RPCProtocol":2,"RPCRateLimit":-1,"R)"
    R"(aftProtocol":3,"RaftSnapshotInterval":"30s","RaftSnapshotThreshold":16384,"RaftTrailingL)"
    R"(ogs":10240,"ReadReplica":false,"ReconnectTimeoutLAN":"0s","ReconnectTimeoutWAN":"0s","Re)"
    R"(joinAfterLeave":false,"RetryJoinIntervalLAN":"30s","RetryJoinIntervalWAN":"30s","RetryJo)"
    R"(inLAN":[],"RetryJoinMaxAttemptsLAN":0,"RetryJoinMaxAttemptsWAN":0,"RetryJoinWAN":[],"Rev)"
    R"(ision":"de95b6f546","SegmentLimit":64,"SegmentName":"","SegmentNameLimit":64,"Segments":)"
    R"([],"SerfAdvertiseAddrLAN":"tcp://127.0.0.1:8301","SerfAdvertiseAddrWAN":"tcp://127.0.0.1)"
    R"(:8302","SerfAllowedCIDRsLAN":[],"SerfAllowedCIDRsWAN":[],"SerfBindAddrLAN":"tcp://127.0.)"
    R"(0.1:8301","SerfBindAddrWAN":"tcp://127.0.0.1:8302","SerfPortLAN":8301,"SerfPortWAN":8302)"
    R"(,"ServerMode":true,"ServerName":"","ServerPort":8300,"Services":[],"SessionTTLMin":"0s",)"
    R"("SkipLeaveOnInt":true,"StartJoinAddrsLAN":[],"StartJoinAddrsWAN":[],"SyncCoordinateInter)"
    R"(valMin":"15s","SyncCoordinateRateTarget":64,"TLSCipherSuites":[],"TLSMinVersion":"tls12")"
    R"(,"TLSPreferServerCipherSuites":false,"TaggedAddresses":{"lan":"127.0.0.1","lan_ipv4":"12)"
    R"(7.0.0.1","wan":"127.0.0.1","wan_ipv4":"127.0.0.1"},"Telemetry":{"AllowedPrefixes":[],"Bl)"
    R"(ockedPrefixes":[],"CirconusAPIApp":"","CirconusAPIToken":"hidden","CirconusAPIURL":"","C)"
    R"(irconusBrokerID":"","CirconusBrokerSelectTag":"","CirconusCheckDisplayName":"","Circonus)"
    R"(CheckForceMetricActivation":"","CirconusCheckID":"","CirconusCheckInstanceID":"","Circon)"
    R"(usCheckSearchTag":"","CirconusCheckTags":"","CirconusSubmissionInterval":"","CirconusSub)"
    R"(missionURL":"","Disable":false,"DisableCompatOneNine":false,"DisableHostname":false,"Dog)"
    R"(statsdAddr":"","DogstatsdTags":[],"FilterDefault":true,"MetricsPrefix":"consul","Prometh)"
    R"(eusOpts":{"CounterDefinitions":[],"Expiration":"0s","GaugeDefinitions":[],"Name":"consul)"
    R"(","Registerer":null,"SummaryDefinitions":[]},"StatsdAddr":"","StatsiteAddr":""},"Transla)"
    R"(teWANAddrs":false,"TxnMaxReqLen":524288,"UIConfig":{"ContentPath":"/ui/","DashboardURLTe)"
    R"(mplates":{},"Dir":"","Enabled":true,"MetricsProvider":"","MetricsProviderFiles":[],"Metr)"
    R"(icsProviderOptionsJSON":"","MetricsProxy":{"AddHeaders":[],"BaseURL":"","PathAllowlist":)"
    R"([]}},"UnixSocketGroup":"","UnixSocketMode":"","UnixSocketUser":"","UseStreamingBackend":)"
    R"(true,"VerifyIncoming":false,"VerifyIncomingHTTPS":false,"VerifyIncomingRPC":false,"Verif)"
    R"(yOutgoing":false,"VerifyServerHostname":false,"Version":"1.10.11","VersionPrerelease":"")"
    R"(,"Watches":[]})";

}  // namespace

json debug_config_json(const agent_info& a) {
    static const json base = json::parse(debug_config_template);
    json j = base;
    const std::string& ip = a.address;
    const auto tcp = [&ip](int port) { return "tcp://" + ip + ":" + std::to_string(port); };
    j["ACLDatacenter"] = a.datacenter;
    j["ACLsEnabled"] = a.acl_enabled;
    j["ACLDefaultPolicy"] = a.acl_enabled ? "deny" : "allow";
    j["AdvertiseAddrLAN"] = ip;
    j["AdvertiseAddrWAN"] = ip;
    j["BindAddr"] = ip;
    j["ClientAddrs"] = json::array({ip});
    j["Datacenter"] = a.datacenter;
    j["PrimaryDatacenter"] = a.datacenter;
    j["EnableLocalScriptChecks"] = a.enable_script_checks || a.enable_local_script_checks;
    j["EnableRemoteScriptChecks"] = a.enable_script_checks;
    j["HTTPAddrs"] = json::array({tcp(a.port)});
    j["HTTPPort"] = a.port;
    j["NodeID"] = a.node_id;
    j["NodeName"] = a.node_name;
    j["RPCAdvertiseAddr"] = tcp(8300);
    j["RPCBindAddr"] = tcp(8300);
    j["SerfAdvertiseAddrLAN"] = tcp(8301);
    j["SerfAdvertiseAddrWAN"] = tcp(8302);
    j["SerfBindAddrLAN"] = tcp(8301);
    j["SerfBindAddrWAN"] = tcp(8302);
    j["TaggedAddresses"] = json{{"lan", ip}, {"lan_ipv4", ip}, {"wan", ip}, {"wan_ipv4", ip}};
    return j;
}

}  // namespace lakemesh::testing::detail
