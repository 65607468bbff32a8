// One RTCPeerConnection per other party, made on the main thread (workers cannot), with
// its negotiated data channel handed to the worker in the task that created it.

/** How a connection's packets travel once connected: 'direct', 'relayed' or null. */
async function pathOf(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((report) => {
    if (report.type === 'transport' && report.selectedCandidatePairId) {
      pair = stats.get(report.selectedCandidatePairId) ?? pair;
    }
  });
  if (!pair) {
    stats.forEach((report) => {
      if (report.type === 'candidate-pair' && report.nominated && report.state === 'succeeded') pair = report;
    });
  }
  if (!pair) return null;
  const types = [stats.get(pair.localCandidateId), stats.get(pair.remoteCandidateId)]
    .map((candidate) => candidate?.candidateType);
  return types.includes('relay') ? 'relayed' : 'direct';
}

/**
 * The link to ``peer``. ``hooks``: ``signal(peer, payload)`` to seal and send a signaling
 * payload (see wire.SIGNAL_KINDS), ``transfer(peer,
 * channel)`` to hand the channel to the worker, ``changed(link)`` when its state changes,
 * ``log(text)``, ``failed(peer, reason)``.
 */
export class PeerLink {
  constructor(peer, me, iceServers, hooks, { relayOnly = false } = {}) {
    this.peer = peer;
    this.hooks = hooks;
    // Relay only: gather no host or server-reflexive candidates, so the other party never
    // learns this computer's addresses (only the relay's).
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
    // Negotiated on both sides, so it exists before any SDP; transferred in this same
    // task, before it can open, as a transferable channel must be.
    const channel = this.pc.createDataChannel('mpyc', { negotiated: true, id: 0 });
    hooks.transfer(peer, channel);
    this.remoteSet = false;
    this.pendingCandidates = [];
    this.steps = Promise.resolve(); // signaling steps of this link, one after another
    this.failed = false;
    this.channelOpen = false; // told by the worker, which owns the channel
    this.closed = false;
    this.path = null;
    this.pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate) {
        hooks.signal(peer, {
          kind: 'candidate',
          candidate: candidate.candidate,
          sdpMid: candidate.sdpMid,
          sdpMLineIndex: candidate.sdpMLineIndex,
        });
      }
    };
    this.pc.onconnectionstatechange = () => {
      hooks.log(`connection to party ${peer}: ${this.pc.connectionState}`);
      if (this.pc.connectionState === 'failed') this.giveUp('the connection failed.');
      if (this.pc.connectionState === 'connected') {
        pathOf(this.pc).then((path) => {
          this.path = path;
          hooks.changed(this);
        }).catch(() => {});
      }
      hooks.changed(this);
    };
    this.pc.onsignalingstatechange = () => hooks.changed(this);
    if (me < peer) this.step(() => this.offer()); // the lower pid offers
    hooks.changed(this);
  }

  step(action) {
    this.steps = this.steps.then(action).catch((error) => {
      this.giveUp(`the connection could not be set up (${error.message || error}).`);
    });
  }

  async offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    this.hooks.signal(this.peer, { kind: 'offer', sdp: this.pc.localDescription.sdp });
  }

  receiveOffer(sdp) {
    this.step(async () => {
      await this.setRemote({ type: 'offer', sdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this.hooks.signal(this.peer, { kind: 'answer', sdp: this.pc.localDescription.sdp });
    });
  }

  receiveAnswer(sdp) {
    this.step(() => this.setRemote({ type: 'answer', sdp }));
  }

  receiveCandidate({ candidate, sdpMid, sdpMLineIndex }) {
    if (!candidate) return; // end of candidates
    const init = { candidate, sdpMid: sdpMid ?? null, sdpMLineIndex: sdpMLineIndex ?? null };
    if (init.sdpMid === null && init.sdpMLineIndex === null) init.sdpMLineIndex = 0;
    if (!this.remoteSet) {
      this.pendingCandidates.push(init);
      return;
    }
    this.addCandidate(init);
  }

  async setRemote(description) {
    await this.pc.setRemoteDescription(description);
    this.remoteSet = true;
    this.hooks.changed(this);
    const pending = this.pendingCandidates.splice(0);
    for (const init of pending) await this.addCandidate(init);
  }

  async addCandidate(init) {
    try {
      await this.pc.addIceCandidate(init);
    } catch (error) {
      this.hooks.log(`ignoring an unusable connection candidate from party ${this.peer}: ${error.message}`);
    }
  }

  opened() {
    this.channelOpen = true;
    this.hooks.changed(this);
  }

  giveUp(reason) {
    if (this.failed) return;
    this.failed = true;
    this.hooks.log(`connection to party ${this.peer}: ${reason}`);
    this.hooks.failed(this.peer, reason);
    this.hooks.changed(this);
  }

  /** The link state as the wire names it (mpyc_webrtc/wire.py LINK_STATES). */
  state() {
    const { pc } = this;
    if (this.failed || pc.connectionState === 'failed') return 'failed';
    if (this.closed || pc.connectionState === 'closed') return 'closed';
    if (this.channelOpen) return 'ready';
    if (pc.connectionState === 'connected') return 'connected';
    if (!this.remoteSet || pc.signalingState !== 'stable') return 'signaling';
    return 'connecting';
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
    this.hooks.changed(this);
  }
}
