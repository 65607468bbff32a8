"""Unanimous vote: everyone learns only whether all parties voted yes.

Each party votes yes or no. The votes are secret-shared as bits (1 for yes) and only
their secure "all" (the product of the bits) is revealed: not how any party voted, and
not how many voted no.

Three parties on this machine, each in its own terminal:
    python -m mpyc_webrtc.programs.vote -M3 -I0 --input=yes
    python -m mpyc_webrtc.programs.vote -M3 -I1 --input=yes
    python -m mpyc_webrtc.programs.vote -M3 -I2 --input=no
"""

from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, publish, read_input


async def main():
    vote = read_input('vote')
    secint = mpc.SecInt(8)
    await mpc.start()
    votes = mpc.input(secint(1 if vote == 'yes' else 0))
    unanimous = await mpc.output(mpc.all(votes))
    if unanimous:
        headline = 'Everyone voted yes.'
    else:
        headline = ('Not unanimous: at least one party voted no. '
                    'Nobody learns who, or how many.')
    publish(Result('Unanimous vote', headline,
                   rows=[('Parties', str(len(mpc.parties))),
                         ('Unanimous', 'yes' if unanimous else 'no')]))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
